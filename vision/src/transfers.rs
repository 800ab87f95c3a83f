//! Counting what crosses between host and device during a scan.
//!
//! On a GPU the cost of a scan is mostly round trips, not kernels: each
//! device→host read waits for the queue to drain. Every read-back and upload
//! point of the pipeline (and of the primitives it calls) goes through
//! [`read`] or [`upload`], which count on the calling thread; a scan runs on
//! one thread, and [`counted`] returns what one closure did. The counts are
//! taken at the same points for every backend, so they compare directly: on
//! NdArray a "read" is a tensor copied out to a `Vec`, on CUDA and Wgpu it
//! is a device synchronisation and a copy over the bus.

use std::cell::Cell;

use burn_tensor::{backend::Backend, Tensor, TensorData};
use serde::{Deserialize, Serialize};

thread_local! {
    static READS: Cell<u64> = const { Cell::new(0) };
    static WRITES: Cell<u64> = const { Cell::new(0) };
}

/// Host↔device transfers of one scan, as reported (`device_reads`, `device_writes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfers {
    /// Device→host reads (each one a synchronisation on a GPU).
    pub device_reads: u64,
    /// Host→device uploads (frames, filter weights, index tables).
    pub device_writes: u64,
}

/// What `f` read back and uploaded on this thread.
pub fn counted<T>(f: impl FnOnce() -> T) -> (T, Transfers) {
    let meter = Meter::start();
    let out = f();
    (out, meter.taken())
}

/// Counts from here on, on this thread (a scan's entry point starts one).
#[derive(Debug)]
pub struct Meter {
    reads: u64,
    writes: u64,
}

impl Meter {
    pub fn start() -> Meter {
        Meter {
            reads: READS.get(),
            writes: WRITES.get(),
        }
    }

    /// What was read back and uploaded on this thread since [`Meter::start`].
    pub fn taken(&self) -> Transfers {
        Transfers {
            device_reads: READS.get() - self.reads,
            device_writes: WRITES.get() - self.writes,
        }
    }
}

/// A tensor's data on the host: the one read-back point.
pub fn read<B: Backend, const D: usize>(t: Tensor<B, D>) -> TensorData {
    READS.set(READS.get() + 1);
    t.into_data()
}

/// A tensor made from host data on `device`: the one upload point for
/// float tensors (see [`note_upload`] for the others).
pub fn upload<B: Backend, const D: usize>(data: TensorData, device: &B::Device) -> Tensor<B, D> {
    note_upload();
    Tensor::from_data(data, device)
}

/// Counts an upload made another way (an integer tensor, a typed upload).
pub fn note_upload() {
    WRITES.set(WRITES.get() + 1);
}

/// Counts a read made another way (a scalar).
pub fn note_read() {
    READS.set(READS.get() + 1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cpu;

    #[test]
    fn counts_what_the_closure_moved_and_nothing_else() {
        let device = Default::default();
        let outside = upload::<Cpu, 1>(TensorData::new(vec![1.0f32, 2.0], [2]), &device);
        let ((), moved) = counted(|| {
            let t = upload::<Cpu, 1>(TensorData::new(vec![3.0f32], [1]), &device);
            read(t + outside.clone());
            read(outside.clone());
        });
        assert_eq!(
            moved,
            Transfers {
                device_reads: 2,
                device_writes: 1
            }
        );
        let (_, nested_outer) = counted(|| counted(|| read(outside.clone())));
        assert_eq!(nested_outer.device_reads, 1, "nested counts add up");
    }
}
