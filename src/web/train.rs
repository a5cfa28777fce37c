//! Training in a page: a model from labels (the teacher, the baseline student) or distilled
//! from a trained teacher (offline KD over the teacher's cached logits), through the one
//! training loop ([`train_async`]); progress goes to a JavaScript callback, and the result
//! keeps its history and gives its checkpoint as the bytes of the native safetensors file.

use std::panic::AssertUnwindSafe;
use std::path::Path;

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use super::data::WebData;
use super::device::Engine;
use super::js_error;
use crate::checkpoint::StoreDtype;
use crate::model_file::{encode_model, model_metadata};
use crate::nn::{ArchSpec, Sequential};
use crate::train::{
    evaluate_async, predict_logits_async, train_async, EpochRecord, KdConfig, Observer,
    TeacherLogits, TrainConfig, TrainJob,
};
use crate::Result;

/// What the page may set; the rest is [`TrainConfig::default`] and [`KdConfig::default`].
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// `teacher`, `student` or a compact spec such as `c16-c32-f128`.
    arch: String,
    /// `teacher`, `baseline`, `kd`: names the run in progress and metrics.
    run: String,
    epochs: usize,
    batch_size: usize,
    lr: f32,
    seed: u64,
    temperature: f32,
    alpha: f32,
}

impl Default for Settings {
    fn default() -> Self {
        let t = TrainConfig::default();
        let kd = KdConfig::default();
        Settings {
            arch: "student".into(),
            run: "model".into(),
            epochs: 1,
            batch_size: t.batch_size,
            lr: t.lr,
            seed: t.seed,
            temperature: kd.temperature,
            alpha: kd.alpha,
        }
    }
}

/// A trained model, on the engine's device.
#[wasm_bindgen]
pub struct WebModel {
    model: AssertUnwindSafe<Sequential>,
    spec: ArchSpec,
    data_input: crate::train::InputSpec,
    seed: u64,
    history: Vec<EpochRecord>,
    seconds: f64,
}

#[derive(Serialize)]
struct Summary<'a> {
    arch: &'a str,
    parameters: usize,
    history: &'a [EpochRecord],
    seconds: f64,
}

#[wasm_bindgen]
impl WebModel {
    /// JSON: the architecture, its parameter count, every epoch's record, the wall time.
    pub fn summary(&self) -> String {
        serde_json::to_string(&Summary {
            arch: &self.spec.arch,
            parameters: self.spec.num_parameters(),
            history: &self.history,
            seconds: self.seconds,
        })
        .unwrap_or_default()
    }

    /// The checkpoint: the bytes of the safetensors file the native build writes (PyTorch
    /// names and layouts, distill metadata), which `distill eval` reads.
    pub async fn checkpoint(&self) -> Result<Vec<u8>, JsError> {
        let meta = model_metadata(&self.spec, &self.data_input, self.seed, self.history.last());
        encode_model(
            Path::new("checkpoint.safetensors"),
            &self.model,
            &meta,
            StoreDtype::F32,
        )
        .await
        .map_err(js_error)
    }

    /// Test loss and accuracy on `data`, as JSON `{loss, accuracy}`.
    pub async fn evaluate(&self, engine: &Engine, data: &WebData) -> Result<String, JsError> {
        let e = evaluate_async(
            &self.model,
            &engine.device,
            &data.test,
            &data.input,
            256,
            false,
        )
        .await
        .map_err(js_error)?;
        Ok(format!(
            "{{\"loss\":{},\"accuracy\":{}}}",
            e.loss, e.accuracy
        ))
    }
}

/// Progress as JSON objects to a JavaScript function: `{event: "batch", run, epoch, done,
/// total, loss?, images_per_second}` and `{event: "epoch", record}`.
struct JsProgress {
    callback: js_sys::Function,
    run: String,
    epoch: usize,
    total: usize,
}

impl JsProgress {
    fn send(&self, json: String) {
        let _ = self
            .callback
            .call1(&JsValue::NULL, &JsValue::from_str(&json));
    }
}

impl Observer for JsProgress {
    fn epoch_start(&mut self, run: &str, epoch: usize, _epochs: usize, batches: usize) {
        self.run = run.to_string();
        self.epoch = epoch;
        self.total = batches;
    }
    fn batch(&mut self, done: usize, loss: Option<f64>, images_per_second: f64) {
        if loss.is_none() {
            return; // only when the loss was read back: the page redraws then
        }
        let loss = loss.map_or("null".into(), |l| l.to_string());
        self.send(format!(
            "{{\"event\":\"batch\",\"run\":{:?},\"epoch\":{},\"done\":{done},\"total\":{},\
             \"loss\":{loss},\"images_per_second\":{images_per_second}}}",
            self.run, self.epoch, self.total
        ));
    }
    fn epoch_end(&mut self, record: &EpochRecord) {
        let r = serde_json::to_string(record).unwrap_or_default();
        self.send(format!("{{\"event\":\"epoch\",\"record\":{r}}}"));
    }
}

fn parse_settings(json: &str) -> Result<Settings> {
    serde_json::from_str(json)
        .map_err(|e| crate::Error::InvalidArgument(format!("training settings: {e}")))
}

async fn run(
    engine: &Engine,
    data: &WebData,
    settings: Settings,
    teacher: Option<&WebModel>,
    progress: js_sys::Function,
) -> Result<WebModel> {
    let device: &crate::Device = &engine.device;
    let input = data.input.clone();
    let spec = ArchSpec::named(
        &settings.arch,
        input.channels,
        input.height,
        input.width,
        input.class_names.len(),
    )?;
    let config = TrainConfig {
        epochs: settings.epochs,
        batch_size: settings.batch_size,
        lr: settings.lr,
        seed: settings.seed,
        ..TrainConfig::default()
    };
    let kd = match teacher {
        None => None,
        Some(t) => {
            let logits = predict_logits_async(&t.model, device, &data.train, &input, 256).await?;
            let kd = KdConfig {
                temperature: settings.temperature,
                alpha: settings.alpha,
            };
            kd.validate()?;
            Some((kd, TeacherLogits::Cached(std::sync::Arc::new(logits))))
        }
    };
    let job = TrainJob {
        run: settings.run.clone(),
        spec: spec.clone(),
        input: input.clone(),
        device: device.clone(),
        config,
        train: data.train.clone(),
        test: data.test.clone(),
        kd,
        hint: None,
        checkpoint_dir: None,
        resume: false,
    };
    let mut obs = JsProgress {
        callback: progress,
        run: settings.run.clone(),
        epoch: 0,
        total: 0,
    };
    let trained = train_async(job, &mut obs).await?;
    Ok(WebModel {
        model: AssertUnwindSafe(trained.model),
        spec,
        data_input: input,
        seed: settings.seed,
        history: trained.history,
        seconds: trained.seconds,
    })
}

/// Trains a model on the labels. `settings`: JSON with any of `arch`, `run`, `epochs`,
/// `batch_size`, `lr`, `seed`; `progress(json)` is called as it trains.
#[wasm_bindgen]
pub async fn train_model(
    engine: &Engine,
    data: &WebData,
    settings: String,
    progress: js_sys::Function,
) -> Result<WebModel, JsError> {
    let settings = parse_settings(&settings).map_err(js_error)?;
    run(engine, data, settings, None, progress)
        .await
        .map_err(js_error)
}

/// Distils a model from `teacher` (Hinton KD on the teacher's logits of every training
/// image); `settings` as for [`train_model`], plus `temperature` and `alpha`.
#[wasm_bindgen]
pub async fn distill_model(
    engine: &Engine,
    data: &WebData,
    teacher: &WebModel,
    settings: String,
    progress: js_sys::Function,
) -> Result<WebModel, JsError> {
    let settings = parse_settings(&settings).map_err(js_error)?;
    run(engine, data, settings, Some(teacher), progress)
        .await
        .map_err(js_error)
}
