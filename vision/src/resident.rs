//! Constant tables kept on the device between calls.
//!
//! The tensor kernels take small host-built tables as tensors: a separable
//! filter's taps, the Laplacian's 3×3 kernel, a resize's source indices and
//! weights, Farneback's polynomial basis, border weights and pixel grids.
//! Built and uploaded on every call, they were most of a scan's uploads on a
//! GPU (217 for a 4-frame scan on Wgpu, against 7 uploads of frame data),
//! each a host→device copy and, on some drivers, a queue submission. They
//! depend only on parameters and image sizes, which repeat from batch to
//! batch and scan to scan, so each thread keeps the tensors it made, keyed by
//! tensor type, device and the table's own bytes and shape: a table is only
//! ever reused for exactly the data it was made from.
//!
//! Per thread, because a scan runs on one thread and burn tensors are cheap
//! handles (a clone shares the device buffer; the cached handle keeps a
//! kernel from reusing that buffer in place). Bounded by bytes: when full the
//! cache is emptied and refills with what the current scan uses.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;

use burn_tensor::{backend::Backend, Int, Tensor, TensorData};

use crate::transfers;

/// The most table bytes a thread keeps on the device: every table of a 4K
/// scan's flow pyramid (border weights are a float per pixel) fits.
const CAPACITY_BYTES: usize = 256 << 20;

#[derive(PartialEq, Eq, Hash)]
struct Key {
    /// The tensor's type: backend, rank and kind.
    tensor: TypeId,
    /// The device, as `Debug` prints it (`Cuda(0)`, `DefaultDevice`, ...).
    device: String,
    /// Shape and element type.
    layout: String,
    bytes: Vec<u8>,
}

impl Key {
    fn new<T: 'static>(data: &TensorData, device: &impl std::fmt::Debug) -> Key {
        Key {
            tensor: TypeId::of::<T>(),
            device: format!("{device:?}"),
            layout: format!("{:?} {:?}", data.shape, data.dtype),
            bytes: data.as_bytes().to_vec(),
        }
    }
}

/// One thread's tables, and the bytes they hold.
#[derive(Default)]
struct Tables {
    by_key: HashMap<Key, Box<dyn Any>>,
    bytes: usize,
}

thread_local! {
    static TABLES: RefCell<Tables> = RefCell::new(Tables::default());
}

fn cached<T: Clone + 'static>(key: Key, upload: impl FnOnce() -> T) -> T {
    let hit = TABLES.with_borrow(|tables| {
        tables
            .by_key
            .get(&key)
            .and_then(|held| held.downcast_ref::<T>())
            .cloned()
    });
    if let Some(tensor) = hit {
        return tensor;
    }
    let tensor = upload();
    TABLES.with_borrow_mut(|tables| {
        let size = key.bytes.len();
        if tables.bytes + size > CAPACITY_BYTES {
            *tables = Tables::default();
        }
        tables.bytes += size;
        tables.by_key.insert(key, Box::new(tensor.clone()));
    });
    tensor
}

/// The float tensor holding `data` on `device`: uploaded (and counted by
/// [`transfers`]) the first time this thread asks for it, shared after.
pub fn float<B: Backend, const D: usize>(data: TensorData, device: &B::Device) -> Tensor<B, D> {
    let key = Key::new::<Tensor<B, D>>(&data, device);
    cached(key, || transfers::upload::<B, D>(data, device))
}

/// [`float`] for an integer table (gather indices).
pub fn int<B: Backend, const D: usize>(data: TensorData, device: &B::Device) -> Tensor<B, D, Int> {
    let key = Key::new::<Tensor<B, D, Int>>(&data, device);
    cached(key, || {
        transfers::note_upload();
        Tensor::from_data(data, device)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfers::counted;
    use crate::Cpu;

    #[test]
    fn a_table_is_uploaded_once_and_only_reused_for_the_same_data() {
        let device = Default::default();
        let table = || TensorData::new(vec![0.25f32, 0.5, 0.25], [1, 1, 1, 3]);
        let (first, moved) = counted(|| float::<Cpu, 4>(table(), &device));
        assert_eq!(moved.device_writes, 1);
        let (again, moved) = counted(|| float::<Cpu, 4>(table(), &device));
        assert_eq!(
            moved.device_writes, 0,
            "the same table is not uploaded again"
        );
        assert_eq!(again.into_data(), first.into_data());

        // Another shape, other values or another kind is another table.
        let (other, moved) = counted(|| {
            let reshaped = float::<Cpu, 4>(
                TensorData::new(vec![0.25f32, 0.5, 0.25], [1, 1, 3, 1]),
                &device,
            );
            let changed = float::<Cpu, 4>(
                TensorData::new(vec![0.25f32, 0.5, 0.5], [1, 1, 1, 3]),
                &device,
            );
            let indices = int::<Cpu, 1>(TensorData::new(vec![1i64, 2, 3], [3]), &device);
            (reshaped, changed, indices)
        });
        assert_eq!(moved.device_writes, 3);
        assert_eq!(other.0.dims(), [1, 1, 3, 1]);
        assert_eq!(
            other.1.into_data().to_vec::<f32>().unwrap(),
            [0.25, 0.5, 0.5]
        );
        assert_eq!(other.2.into_data().to_vec::<i64>().unwrap(), [1, 2, 3]);
    }
}
