//! Bilinear remapping through a host-computed coordinate map (OpenCV
//! `remap(..., INTER_LINEAR, BORDER_CONSTANT, 0)`). The pipeline uses it to
//! rectify the item with a perspective transform.

use burn_tensor::{backend::Backend, Int, Tensor, TensorData};

/// Sample `img` (`[1, C, H, W]`) at `map[i] = (x, y)` for every output pixel
/// in row-major order of an `out_w × out_h` image; outside pixels read 0.
pub fn remap_bilinear<B: Backend>(img: Tensor<B, 4>, map: &[(f32, f32)], out_w: usize, out_h: usize) -> Tensor<B, 4> {
    let [n, c, h, w] = img.dims();
    assert_eq!(n, 1, "remap one image at a time");
    assert_eq!(map.len(), out_w * out_h);
    let device = img.device();
    let len = map.len();
    let mut idx = vec![vec![0i64; len]; 4];
    let mut wt = vec![vec![0f32; len]; 4];
    for (i, &(x, y)) in map.iter().enumerate() {
        let (x0, y0) = (x.floor(), y.floor());
        let (ax, ay) = (x - x0, y - y0);
        let corners = [(0, 0, (1.0 - ax) * (1.0 - ay)), (1, 0, ax * (1.0 - ay)), (0, 1, (1.0 - ax) * ay), (1, 1, ax * ay)];
        for (k, &(dx, dy, weight)) in corners.iter().enumerate() {
            let (xx, yy) = (x0 as i64 + dx, y0 as i64 + dy);
            if xx >= 0 && yy >= 0 && (xx as usize) < w && (yy as usize) < h {
                idx[k][i] = yy * w as i64 + xx;
                wt[k][i] = weight;
            }
        }
    }
    let flat = img.reshape([1, c, h * w]);
    let mut acc: Option<Tensor<B, 3>> = None;
    for k in 0..4 {
        let ix = Tensor::<B, 1, Int>::from_data(TensorData::new(idx[k].clone(), [len]), &device)
            .reshape([1, 1, len])
            .expand([1, c, len]);
        let wk = Tensor::<B, 1>::from_data(TensorData::new(wt[k].clone(), [len]), &device).reshape([1, 1, len]);
        let term = flat.clone().gather(2, ix) * wk;
        acc = Some(match acc {
            Some(a) => a + term,
            None => term,
        });
    }
    acc.expect("four taps").reshape([1, c, out_h, out_w])
}
