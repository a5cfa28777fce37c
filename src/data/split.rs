//! One split of a dataset (training or test): raw N×C×H×W bytes and a label per image, with
//! subsets: by index, the first n, and seeded class-stratified label fractions.

use crate::rng::Rng;
use crate::{Error, Result};

/// Images as raw bytes (N×C×H×W, 0..255) and one label per image. The per-image size is
/// `images.len() / labels.len()`; the shape lives in the [`Dataset`](super::Dataset).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub images: Vec<u8>,
    pub labels: Vec<u32>,
}

impl Split {
    /// A split from bytes and labels; the bytes must be a whole number of images.
    pub fn new(images: Vec<u8>, labels: Vec<u32>) -> Result<Split> {
        let ok = if labels.is_empty() {
            images.is_empty()
        } else {
            images.len().is_multiple_of(labels.len()) && !images.is_empty()
        };
        if !ok {
            return Err(Error::Data(format!(
                "{} image bytes are not a whole number of images for {} labels",
                images.len(),
                labels.len()
            )));
        }
        Ok(Split { images, labels })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image (C·H·W); 0 for an empty split.
    pub fn image_len(&self) -> usize {
        self.images
            .len()
            .checked_div(self.labels.len())
            .unwrap_or(0)
    }

    /// Raw bytes of image `i` (C×H×W).
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// The images at `indices`, in that order (repeats allowed).
    pub fn subset(&self, indices: &[usize]) -> Split {
        let n = self.image_len();
        let mut images = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Split {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
        }
    }

    /// The first `min(n, len)` images.
    pub fn take(&self, n: usize) -> Split {
        let n = n.min(self.len());
        Split {
            images: self.images[..n * self.image_len()].to_vec(),
            labels: self.labels[..n].to_vec(),
        }
    }

    /// Images per class: entry k counts label k (at least `num_classes` entries).
    pub fn class_counts(&self, num_classes: usize) -> Vec<usize> {
        let max = self.labels.iter().max().map_or(0, |&m| m as usize + 1);
        let mut counts = vec![0usize; num_classes.max(max)];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// Positions of a seeded, class-stratified subset: each class keeps
    /// `round(fraction · count)` images, at least 1, chosen by a shuffle seeded with
    /// `(seed, class)`. Sorted ascending. A smaller fraction with the same seed gives a subset
    /// of a larger one's.
    pub fn label_fraction_indices(&self, fraction: f64, seed: u64) -> Result<Vec<usize>> {
        if !(fraction > 0.0 && fraction <= 1.0) {
            return Err(Error::Data(format!(
                "label fraction must be in (0, 1], got {fraction}"
            )));
        }
        let counts = self.class_counts(0);
        let mut by_class: Vec<Vec<usize>> = counts.iter().map(|&c| Vec::with_capacity(c)).collect();
        for (i, &l) in self.labels.iter().enumerate() {
            by_class[l as usize].push(i);
        }
        let mut keep = Vec::new();
        for (class, mut idx) in by_class.into_iter().enumerate() {
            if idx.is_empty() {
                continue;
            }
            let k = ((fraction * idx.len() as f64).round() as usize).clamp(1, idx.len());
            Rng::derive(seed, "label_fraction", class as u64).shuffle(&mut idx);
            keep.extend_from_slice(&idx[..k]);
        }
        keep.sort_unstable();
        Ok(keep)
    }

    /// A seeded, class-stratified subset (see [`Split::label_fraction_indices`]), in the
    /// split's original order.
    pub fn label_fraction(&self, fraction: f64, seed: u64) -> Result<Split> {
        Ok(self.subset(&self.label_fraction_indices(fraction, seed)?))
    }
}
