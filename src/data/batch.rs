//! Batches: seeded shuffling per epoch, optional augmentation (random crop with zero padding,
//! horizontal flip), normalisation to f32, made on a background thread into a bounded queue.
//!
//! Everything random is a pure function of (seed, epoch): the order comes from
//! `Rng::derive(seed, "shuffle", epoch)`, and the augmentation of image i from
//! `Rng::derive(e, "sample", i)` with `e = Rng::derive(seed, "augment", epoch).next_u64()`, so it
//! does not depend on the batch size, and an interrupted run resumes identically.
//!
//! Normalisation: `x = (byte / 255 − mean[c]) / std[c]` in f32 (through a 256-entry table per
//! channel). Padding pixels of the crop are byte 0, as torchvision's `RandomCrop(padding=p)`
//! before `Normalize`.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::data::Split;
use crate::rng::Rng;
use crate::{Error, Result};

/// How many finished batches wait in the queue ahead of the consumer.
pub const QUEUE_DEPTH: usize = 4;

/// Training-time augmentation. The default does nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    /// Pad each side by this many zero pixels, then crop back to H×W at a random offset.
    pub crop_padding: usize,
    /// Flip horizontally with probability ½.
    pub hflip: bool,
}

impl Augment {
    pub fn is_active(&self) -> bool {
        self.crop_padding > 0 || self.hflip
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BatchConfig {
    pub batch_size: usize,
    pub shuffle: bool,
    pub seed: u64,
    /// Drop the last, smaller batch.
    pub drop_last: bool,
    pub augment: Augment,
    /// Per-channel mean and std on the 0..1 scale. Empty: no normalisation (x = byte/255);
    /// one value: used for every channel.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            batch_size: 128,
            shuffle: true,
            seed: 0,
            drop_last: false,
            augment: Augment::default(),
            mean: Vec::new(),
            std: Vec::new(),
        }
    }
}

impl BatchConfig {
    /// A config for evaluation: in order, no augmentation, keep the last batch.
    pub fn eval(batch_size: usize, mean: Vec<f32>, std: Vec<f32>) -> Self {
        BatchConfig {
            batch_size,
            shuffle: false,
            mean,
            std,
            ..Default::default()
        }
    }
}

/// One batch: normalised images B×C×H×W, labels, and each image's position in the split.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
    pub indices: Vec<usize>,
    pub shape: [usize; 4],
}

impl Batch {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Number of batches an epoch of `n` images gives.
pub fn num_batches(n: usize, batch_size: usize, drop_last: bool) -> usize {
    if batch_size == 0 {
        0
    } else if drop_last {
        n / batch_size
    } else {
        n.div_ceil(batch_size)
    }
}

/// The order in which an epoch visits the split: 0..n, or its seeded shuffle.
pub fn epoch_order(n: usize, shuffle: bool, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        Rng::derive(seed, "shuffle", epoch).shuffle(&mut order);
    }
    order
}

/// Precomputed per-epoch state to build batches; shared by the background thread and
/// [`Batcher::batch`] for callers that want batches synchronously.
#[derive(Clone, Debug)]
pub struct Batcher {
    split: Arc<Split>,
    shape: [usize; 3],
    augment: Augment,
    batch_size: usize,
    order: Vec<usize>,
    count: usize,
    lut: Vec<[f32; 256]>,
    aug_seed: u64,
}

impl Batcher {
    /// Checks the config against the split and prepares one epoch.
    pub fn new(
        split: Arc<Split>,
        channels: usize,
        height: usize,
        width: usize,
        cfg: &BatchConfig,
        epoch: u64,
    ) -> Result<Batcher> {
        let per = channels * height * width;
        if per == 0 || split.images.len() != split.len() * per {
            return Err(Error::Data(format!(
                "split of {} images and {} bytes does not hold {channels}×{height}×{width} images",
                split.len(),
                split.images.len()
            )));
        }
        if cfg.batch_size == 0 {
            return Err(Error::Data("batch size must be at least 1".into()));
        }
        let pick = |v: &[f32], what: &str, default: f32| -> Result<Vec<f32>> {
            match v.len() {
                0 => Ok(vec![default; channels]),
                1 => Ok(vec![v[0]; channels]),
                n if n == channels => Ok(v.to_vec()),
                n => Err(Error::Data(format!(
                    "normalisation {what} has {n} values for {channels} channels"
                ))),
            }
        };
        let mean = pick(&cfg.mean, "mean", 0.0)?;
        let std = pick(&cfg.std, "std", 1.0)?;
        if std.iter().any(|&s| !(s > 0.0 && s.is_finite())) || mean.iter().any(|m| !m.is_finite()) {
            return Err(Error::Data(format!(
                "normalisation needs finite means and positive stds, got mean {mean:?} std {std:?}"
            )));
        }
        let lut = mean
            .iter()
            .zip(&std)
            .map(|(&m, &s)| {
                let mut t = [0f32; 256];
                for (v, x) in t.iter_mut().enumerate() {
                    *x = (v as f32 / 255.0 - m) / s;
                }
                t
            })
            .collect();
        let n = split.len();
        Ok(Batcher {
            order: epoch_order(n, cfg.shuffle, cfg.seed, epoch),
            count: num_batches(n, cfg.batch_size, cfg.drop_last),
            shape: [channels, height, width],
            augment: cfg.augment,
            batch_size: cfg.batch_size,
            aug_seed: Rng::derive(cfg.seed, "augment", epoch).next_u64(),
            lut,
            split,
        })
    }

    /// Number of batches in the epoch.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Batch `b` of the epoch (b < len()).
    pub fn batch(&self, b: usize) -> Batch {
        let start = b * self.batch_size;
        let end = (start + self.batch_size).min(self.order.len());
        let indices = self.order[start..end].to_vec();
        let [c, h, w] = self.shape;
        let per = c * h * w;
        let mut images = vec![0f32; indices.len() * per];
        for (dst, &i) in images.chunks_exact_mut(per).zip(&indices) {
            self.write_image(i, dst);
        }
        Batch {
            labels: indices.iter().map(|&i| self.split.labels[i]).collect(),
            shape: [indices.len(), c, h, w],
            images,
            indices,
        }
    }

    fn write_image(&self, i: usize, dst: &mut [f32]) {
        let [c, h, w] = self.shape;
        let src = self.split.image(i);
        if !self.augment.is_active() {
            for ch in 0..c {
                let lut = &self.lut[ch];
                let plane = ch * h * w..(ch + 1) * h * w;
                for (d, &s) in dst[plane.clone()].iter_mut().zip(&src[plane]) {
                    *d = lut[s as usize];
                }
            }
            return;
        }
        let mut rng = Rng::derive(self.aug_seed, "sample", i as u64);
        let p = self.augment.crop_padding as isize;
        let (dy, dx) = if p > 0 {
            let span = 2 * self.augment.crop_padding + 1;
            (rng.below(span) as isize - p, rng.below(span) as isize - p)
        } else {
            (0, 0)
        };
        let flip = self.augment.hflip && rng.below(2) == 1;
        let (hi, wi) = (h as isize, w as isize);
        for ch in 0..c {
            let lut = &self.lut[ch];
            let plane = &src[ch * h * w..(ch + 1) * h * w];
            let out = &mut dst[ch * h * w..(ch + 1) * h * w];
            for y in 0..hi {
                let row = &mut out[(y * wi) as usize..((y + 1) * wi) as usize];
                let sy = y + dy;
                if sy < 0 || sy >= hi {
                    row.fill(lut[0]);
                    continue;
                }
                let srow = &plane[(sy * wi) as usize..((sy + 1) * wi) as usize];
                for (x, d) in row.iter_mut().enumerate() {
                    let xo = if flip {
                        wi - 1 - x as isize
                    } else {
                        x as isize
                    };
                    let sx = xo + dx;
                    *d = if sx < 0 || sx >= wi {
                        lut[0]
                    } else {
                        lut[srow[sx as usize] as usize]
                    };
                }
            }
        }
    }
}

/// Batches of one epoch, made on a background thread into a queue of [`QUEUE_DEPTH`].
/// Dropping it early stops and joins the thread. In a browser, which has no threads here,
/// each batch is made when it is asked for.
pub struct BatchIter {
    rx: Option<Receiver<Batch>>,
    handle: Option<JoinHandle<()>>,
    /// The batcher and the next batch's index, when batches are made on demand.
    inline: Option<(Batcher, usize)>,
    remaining: usize,
    total: usize,
}

impl BatchIter {
    /// Number of batches in the whole epoch (`len()` counts those not yet taken).
    pub fn num_batches(&self) -> usize {
        self.total
    }
}

impl Iterator for BatchIter {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        if self.remaining == 0 {
            return None;
        }
        if let Some((batcher, next)) = self.inline.as_mut() {
            let b = batcher.batch(*next);
            *next += 1;
            self.remaining -= 1;
            return Some(b);
        }
        match self.rx.as_ref()?.recv() {
            Ok(b) => {
                self.remaining -= 1;
                Some(b)
            }
            Err(_) => {
                // The producer ended early: it can only have panicked; pass the panic on.
                self.remaining = 0;
                self.rx = None;
                if let Some(h) = self.handle.take() {
                    if let Err(p) = h.join() {
                        std::panic::resume_unwind(p);
                    }
                }
                None
            }
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for BatchIter {}

impl Drop for BatchIter {
    fn drop(&mut self) {
        // Closing the receiver makes the producer's next send fail, so it returns.
        self.rx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Starts one epoch of batches on a background thread; see [`batches`].
pub fn try_batches(
    split: impl Into<Arc<Split>>,
    channels: usize,
    height: usize,
    width: usize,
    cfg: &BatchConfig,
    epoch: u64,
) -> Result<BatchIter> {
    let batcher = Batcher::new(split.into(), channels, height, width, cfg, epoch)?;
    let total = batcher.len();
    if cfg!(target_arch = "wasm32") {
        return Ok(BatchIter {
            rx: None,
            handle: None,
            inline: Some((batcher, 0)),
            remaining: total,
            total,
        });
    }
    let (tx, rx) = sync_channel(QUEUE_DEPTH);
    let handle = std::thread::Builder::new()
        .name("distill-batches".into())
        .spawn(move || {
            for b in 0..batcher.len() {
                if tx.send(batcher.batch(b)).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| Error::Other(format!("cannot start the batch thread: {e}")))?;
    Ok(BatchIter {
        rx: Some(rx),
        handle: Some(handle),
        inline: None,
        remaining: total,
        total,
    })
}

/// One epoch of batches of `split` (an `Arc<Split>`, or a `Split` moved in), made on a
/// background thread. Wrap a dataset's split in an `Arc` once and pass clones of the `Arc`
/// each epoch. Panics on a config that does not fit the split (batch size 0, wrong number of
/// mean/std values, a split that is not N×C×H×W); [`try_batches`] returns that as an error.
pub fn batches(
    split: impl Into<Arc<Split>>,
    channels: usize,
    height: usize,
    width: usize,
    cfg: &BatchConfig,
    epoch: u64,
) -> BatchIter {
    match try_batches(split, channels, height, width, cfg, epoch) {
        Ok(it) => it,
        Err(e) => panic!("batches: {e}"),
    }
}
