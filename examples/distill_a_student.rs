//! Train a teacher on your own data and distill it into a student, from code: the library's
//! shortest path through the whole job. Runs on the shipped Fashion-MNIST at a tiny size:
//!
//! ```sh
//! cargo run --release --example distill_a_student -- [DATA_DIR] [IMAGES]
//! ```
//!
//! DATA_DIR is any folder `distill` reads (IDX, CIFAR binaries, image folders); IMAGES the
//! number of training images to use (default 1,000).

use std::path::PathBuf;
use std::sync::Arc;

use distill::data::{self, LoadOptions};
use distill::nn::ArchSpec;
use distill::train::{
    evaluate, predict_logits, train, InputSpec, KdConfig, Silent, TeacherLogits, TrainConfig,
    TrainJob,
};
use distill::Device;

fn main() -> distill::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(data::default_data_dir);
    let images: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);

    let mut ds = data::load(&dir, &LoadOptions::default())?;
    let input = InputSpec::of(&ds);
    let train_split = Arc::new(ds.train.take(images.min(ds.train.len())));
    let test = Arc::new(ds.test.take(images.min(ds.test.len())));
    ds.train = Default::default(); // keep one copy of the images
    let classes = ds.num_classes();
    let device = Device::cpu(); // or Device::from_spec("gpu")?
    let job = |run: &str, arch: &str, kd| -> distill::Result<TrainJob<'static>> {
        Ok(TrainJob {
            run: run.into(),
            spec: ArchSpec::named(arch, ds.channels, ds.height, ds.width, classes)?,
            input: input.clone(),
            device: device.clone(),
            config: TrainConfig {
                epochs: 2,
                ..TrainConfig::default()
            },
            train: train_split.clone(),
            test: test.clone(),
            kd,
            hint: None,
            checkpoint_dir: None,
            resume: false,
        })
    };

    let teacher = train(job("teacher", "teacher", None)?, &mut Silent)?;
    let logits = predict_logits(&teacher.model, &device, &train_split, &input, 256)?;
    let kd = Some((KdConfig::default(), TeacherLogits::Cached(Arc::new(logits))));
    let student = train(job("kd", "student", kd)?, &mut Silent)?;

    for (name, model) in [("teacher", &teacher.model), ("KD student", &student.model)] {
        let e = evaluate(model, &device, &test, &input, 256, false)?;
        println!("{name:>10}: test accuracy {:.2}%", 100.0 * e.accuracy);
    }
    Ok(())
}
