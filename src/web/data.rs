//! The data set in a page: the four IDX files (raw or gzip) the page fetched, as a
//! [`Dataset`], cut to the sizes asked for.

use std::path::Path;
use std::sync::Arc;

use wasm_bindgen::prelude::*;

use super::js_error;
use crate::data::idx::{images_from_bytes, labels_from_bytes};
use crate::data::{Dataset, Split, FASHION_MNIST_CLASSES};
use crate::train::InputSpec;
use crate::Result;

/// Training and test splits with their input description.
#[wasm_bindgen]
pub struct WebData {
    pub(crate) train: Arc<Split>,
    pub(crate) test: Arc<Split>,
    pub(crate) input: InputSpec,
}

#[wasm_bindgen]
impl WebData {
    /// Fashion-MNIST from its four files' bytes, the first `max_train` training and
    /// `max_test` test images (0: all).
    #[wasm_bindgen(constructor)]
    pub fn new(
        train_images: Vec<u8>,
        train_labels: Vec<u8>,
        test_images: Vec<u8>,
        test_labels: Vec<u8>,
        max_train: usize,
        max_test: usize,
    ) -> Result<WebData, JsError> {
        load(
            [train_images, train_labels, test_images, test_labels],
            max_train,
            max_test,
        )
        .map_err(js_error)
    }

    pub fn train_len(&self) -> usize {
        self.train.len()
    }
    pub fn test_len(&self) -> usize {
        self.test.len()
    }
}

fn split(images: Vec<u8>, labels: Vec<u8>, what: &str, max: usize) -> Result<Split> {
    let images = images_from_bytes(Path::new(&format!("{what} images")), images)?;
    let labels = labels_from_bytes(Path::new(&format!("{what} labels")), labels)?;
    if images.count != labels.len() {
        return Err(crate::Error::Data(format!(
            "{what}: {} images but {} labels",
            images.count,
            labels.len()
        )));
    }
    let s = Split::new(images.pixels, labels)?;
    Ok(if max > 0 && max < s.len() {
        s.take(max)
    } else {
        s
    })
}

fn load(files: [Vec<u8>; 4], max_train: usize, max_test: usize) -> Result<WebData> {
    let [ti, tl, vi, vl] = files;
    let train = split(ti, tl, "training", max_train)?;
    let test = split(vi, vl, "test", max_test)?;
    let names = FASHION_MNIST_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut ds = Dataset::from_splits("fashion-mnist", (1, 28, 28), names, train, test)?;
    Ok(WebData {
        input: InputSpec::of(&ds),
        train: Arc::new(std::mem::take(&mut ds.train)),
        test: Arc::new(std::mem::take(&mut ds.test)),
    })
}
