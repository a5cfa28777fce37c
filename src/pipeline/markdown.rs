//! The report as text: `report.md` (what the run bought, in prose and tables, one function
//! per section) and the few lines a terminal shows at the end of a run.

use std::fmt::Write as _;

use super::report::{ACCURACY_PNG, CONFUSION_PNG, LOSS_PNG};
use super::{mean_std, Report, RunSummary};
use crate::optim::LrSchedule;

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

fn points(x: f64) -> String {
    format!("{:+.2} points", 100.0 * x)
}

/// `1,234,567`.
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn bytes(n: usize) -> String {
    if n >= 1 << 20 {
        format!("{:.2} MiB", n as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

fn schedule(s: &LrSchedule) -> String {
    match s {
        LrSchedule::Constant => "constant".into(),
        LrSchedule::Step { step_size, gamma } => {
            format!("step (×{gamma} every {step_size} epochs)")
        }
        LrSchedule::Cosine { t_max, eta_min } => {
            format!("cosine (over {t_max} epochs to {eta_min})")
        }
    }
}

/// `85.12% ± 0.31` over the runs (or the single value).
fn mean_pm(runs: &[RunSummary], f: fn(&RunSummary) -> f64) -> String {
    let vals: Vec<f64> = runs.iter().map(f).collect();
    let (m, s) = mean_std(&vals);
    if runs.len() > 1 {
        format!("{:.2}% ± {:.2}", 100.0 * m, 100.0 * s)
    } else {
        pct(m)
    }
}

/// The images the KD student learned on: its transfer set, or (reports without one) its
/// labelled images.
fn kd_images(r: &Report) -> usize {
    match r.transfer_labelled_images + r.transfer_soft_only_images {
        0 => r.student_train_images,
        n => n,
    }
}

fn mean_of(runs: &[RunSummary], f: fn(&RunSummary) -> f64) -> f64 {
    mean_std(&runs.iter().map(f).collect::<Vec<_>>()).0
}

/// The text of `report.md`; `f16_files` lists the f16 checkpoints found in the run directory.
pub fn markdown(r: &Report, f16_files: &[String]) -> String {
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "# Knowledge distillation report\n");
    let _ = writeln!(
        w,
        "distill {} · dataset **{}** · device **{}** · total wall time {:.1} s\n",
        r.version, r.dataset, r.device, r.total_seconds
    );
    setup(w, r);
    accuracy(w, r);
    size_and_speed(w, r);
    training_time(w, r);
    configuration(w, r, f16_files);
    plots(w, r);
    md
}

/// Each teacher's accuracy and the ensemble's, when the students learned from several.
fn ensemble_setup(w: &mut String, r: &Report) {
    let Some(ensemble) = r.ensemble_accuracy else {
        return;
    };
    let each: Vec<String> = r
        .teachers
        .iter()
        .map(|t| format!("{} (seed {}) {}", t.run, t.seed, pct(t.final_accuracy)))
        .collect();
    let _ = writeln!(
        w,
        "\nThe KD students learned from an **ensemble of {} teachers** ({:?} averaged at T = {}): \
         {}; the ensemble's prediction: **{}**. The KD student ends at {} (first seed).",
        r.teachers.len(),
        r.config.ensemble,
        r.config.kd.temperature,
        each.join(", "),
        pct(ensemble),
        r.kd.first()
            .map_or_else(|| "-".into(), |k| pct(k.final_accuracy))
    );
}

/// Which of the KD student's images had labels and which only the teacher's soft targets.
fn transfer_setup(w: &mut String, r: &Report) {
    if r.transfer_soft_only_images == 0 {
        return;
    }
    let _ = writeln!(
        w,
        "\nThe **KD student** learned on a transfer set of {} images (transfer = {}): \
         **{} with labels** (the baseline's images) and **{} with the teacher's soft targets \
         only**; the cross-entropy term averages over the labelled images of each batch. It \
         trained {} epochs over them (the baseline {} over its labelled images).",
        thousands(r.transfer_labelled_images + r.transfer_soft_only_images),
        r.config.transfer,
        thousands(r.transfer_labelled_images),
        thousands(r.transfer_soft_only_images),
        r.kd_epochs,
        r.config.student.epochs
    );
}

fn setup(w: &mut String, r: &Report) {
    let c = &r.config;
    let seeds = r.kd.len();
    let _ = writeln!(w, "## Setup\n");
    match &c.teacher_checkpoint {
        None => {
            let _ = writeln!(
                w,
                "The **teacher** ({} parameters) was trained on **all {} training images** \
                 (with labels). The **students** ({} parameters each) saw **only {} of them** \
                 (label_fraction = {}, a class-stratified sample drawn with seed {}).",
                thousands(r.teacher_stats.parameters),
                r.teacher_train_images,
                thousands(r.student_stats.parameters),
                r.student_train_images,
                c.label_fraction,
                c.student.seed
            );
        }
        Some(path) => {
            let _ = writeln!(
                w,
                "The **teacher** ({} parameters) was not trained in this run: it was loaded from \
                 `{}` (trained elsewhere; this dataset has {} training images). The **students** \
                 ({} parameters each) saw **only {} training images** (label_fraction = {}, a \
                 class-stratified sample drawn with seed {}).",
                thousands(r.teacher_stats.parameters),
                path.display(),
                r.teacher_train_images,
                thousands(r.student_stats.parameters),
                r.student_train_images,
                c.label_fraction,
                c.student.seed
            );
        }
    }
    transfer_setup(w, r);
    ensemble_setup(w, r);
    if let Some(n) = c.max_train {
        let _ = writeln!(
            w,
            "(The run's training split is the first {} images of the dataset: max_train = {n}.)",
            r.teacher_train_images
        );
    }
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "The baseline student and the KD student share the {}images, the seed, the \
         initialisation and the schedule; the only difference is the loss: labels alone \
         (cross-entropy) versus Hinton KD against the teacher, \
         `α·T²·KL(teacher/T ‖ student/T) + (1−α)·CE` with T = {} and α = {}. Accuracy is \
         measured on {} test images.{}\n",
        if r.transfer_soft_only_images > 0 {
            "labelled "
        } else {
            ""
        },
        c.kd.temperature,
        c.kd.alpha,
        r.test_images,
        if seeds > 1 {
            format!(
                " Each student was trained with {seeds} seeds ({}…{}); numbers are mean ± \
                 sample standard deviation over seeds.",
                c.student.seed,
                c.student.seed + seeds as u64 - 1
            )
        } else {
            String::new()
        }
    );
}

fn accuracy(w: &mut String, r: &Report) {
    let seeds = r.kd.len();
    let _ = writeln!(w, "## Test accuracy\n");
    let _ = writeln!(w, "| model | train images | final | best (epoch) |");
    let _ = writeln!(w, "|---|---:|---:|---:|");
    let t = &r.teacher;
    let teacher_best = if t.history.is_empty() {
        format!("{} (loaded)", pct(t.best_accuracy))
    } else {
        format!("{} ({})", pct(t.best_accuracy), t.best_epoch)
    };
    let _ = writeln!(
        w,
        "| teacher | {} | {} | {} |",
        r.teacher_train_images,
        pct(t.final_accuracy),
        teacher_best
    );
    for (name, runs) in [("baseline student", &r.baseline), ("KD student", &r.kd)] {
        if seeds > 1 {
            for s in runs.iter() {
                let _ = writeln!(
                    w,
                    "| {name}, seed {} | {} | {} | {} ({}) |",
                    s.seed,
                    s.train_images,
                    pct(s.final_accuracy),
                    pct(s.best_accuracy),
                    s.best_epoch
                );
            }
            let _ = writeln!(
                w,
                "| **{name}, mean ± std** | {} | {} | {} |",
                r.student_train_images,
                mean_pm(runs, |s| s.final_accuracy),
                mean_pm(runs, |s| s.best_accuracy)
            );
        } else if let Some(s) = runs.first() {
            let _ = writeln!(
                w,
                "| {name} | {} | {} | {} ({}) |",
                s.train_images,
                pct(s.final_accuracy),
                pct(s.best_accuracy),
                s.best_epoch
            );
        }
    }
    let _ = writeln!(
        w,
        "\n**KD gain** (KD student − baseline student{}): **{}** final, **{}** at the best epoch.",
        if seeds > 1 { ", means over seeds" } else { "" },
        points(r.kd_gain_final),
        points(r.kd_gain_best)
    );
    let teacher_gap = t.final_accuracy - mean_of(&r.kd, |s| s.final_accuracy);
    let _ = writeln!(
        w,
        "The KD student ends {:.2} points {} the teacher, with {:.1}× fewer parameters.\n",
        100.0 * teacher_gap.abs(),
        if teacher_gap >= 0.0 { "below" } else { "above" },
        r.compression
    );
}

fn size_and_speed(w: &mut String, r: &Report) {
    let (ts, ss) = (&r.teacher_stats, &r.student_stats);
    let _ = writeln!(w, "## Size and speed on {}\n", r.device);
    let _ = writeln!(w, "| | teacher | student | teacher / student |");
    let _ = writeln!(w, "|---|---:|---:|---:|");
    let _ = writeln!(
        w,
        "| parameters | {} | {} | {:.1}× (compression) |",
        thousands(ts.parameters),
        thousands(ss.parameters),
        r.compression
    );
    let _ = writeln!(
        w,
        "| bytes, f32 | {} ({}) | {} ({}) | {:.1}× |",
        thousands(ts.bytes_f32),
        bytes(ts.bytes_f32),
        thousands(ss.bytes_f32),
        bytes(ss.bytes_f32),
        ts.bytes_f32 as f64 / ss.bytes_f32.max(1) as f64
    );
    let _ = writeln!(
        w,
        "| bytes, f16 | {} ({}) | {} ({}) | {:.1}× (teacher f32 / student f16: {:.1}×) |",
        thousands(ts.bytes_f16),
        bytes(ts.bytes_f16),
        thousands(ss.bytes_f16),
        bytes(ss.bytes_f16),
        ts.bytes_f16 as f64 / ss.bytes_f16.max(1) as f64,
        ts.bytes_f32 as f64 / ss.bytes_f16.max(1) as f64
    );
    let _ = writeln!(
        w,
        "| latency, batch 1 | {:.3} ms | {:.3} ms | {:.2}× speed-up |",
        ts.latency_ms_batch1, ss.latency_ms_batch1, r.speedup_latency
    );
    let _ = writeln!(
        w,
        "| throughput, batch 256 | {:.0} img/s | {:.0} img/s | {:.2}× speed-up |",
        ts.throughput_batch256, ss.throughput_batch256, r.speedup_throughput
    );
    let _ = writeln!(
        w,
        "\nLatency is the mean wall time of one forward pass of a single image; throughput is \
         images per second of forward passes at batch 256 (both after a warm-up, read-back \
         included).\n"
    );
}

fn training_time(w: &mut String, r: &Report) {
    let _ = writeln!(w, "## Training time\n");
    let _ = writeln!(
        w,
        "| run | epochs | seconds per epoch | images/s (last epoch) |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|");
    let mut time_row = |s: &RunSummary| {
        let ips = s.history.last().map_or(0.0, |h| h.images_per_second);
        let _ = writeln!(
            w,
            "| {} | {} | {:.2} | {:.0} |",
            s.run,
            s.history.len(),
            s.seconds_per_epoch,
            ips
        );
    };
    if !r.teacher.history.is_empty() {
        time_row(&r.teacher);
    }
    for s in r.baseline.iter().chain(&r.kd) {
        time_row(s);
    }
    let _ = writeln!(w);
    if let Some(f) = &r.floor {
        let source = if f.peak_source.is_empty() {
            "measured at the end of the run".to_string()
        } else {
            f.peak_source.clone()
        };
        let _ = writeln!(
            w,
            "Floor: the epochs and the logit cache did {:.1} TFLOP of convolution and matrix \
             work; at this device's peak ({}: {:.1} GFLOP/s, {source}) that takes at least \
             **{:.1} s**. They took {:.1} s, **{:.2}× the floor**.\n",
            f.work_tflop, f.peak_label, f.peak_gflops, f.floor_seconds, f.seconds, f.times_floor
        );
    }
    match &r.load {
        Some(l) => {
            let _ = writeln!(w, "Machine: {}.\n", l.describe());
        }
        None => {
            let _ = writeln!(w, "Machine: the load average was not recorded.\n");
        }
    }
    match (r.teacher_cache_seconds, r.teacher_seconds_saved) {
        (Some(cache), saved) => {
            let _ = writeln!(
                w,
                "Offline KD: the teacher's logits for the {} images of the KD student were \
                 computed once, in {:.2} s, and cached; online KD would have run the teacher over \
                 them in every KD epoch, so about **{:.1} s of teacher time was saved**.\n",
                kd_images(r),
                cache,
                saved.unwrap_or(0.0)
            );
        }
        (None, _) => {
            let _ = writeln!(
                w,
                "Online KD: with augmentation the teacher runs forward on every augmented batch \
                 (no cache, no teacher time saved).\n"
            );
        }
    }
}

fn configuration(w: &mut String, r: &Report, f16_files: &[String]) {
    let c = &r.config;
    let seeds = r.kd.len();
    let _ = writeln!(w, "## Configuration\n");
    let _ = writeln!(w, "| | teacher | students |");
    let _ = writeln!(w, "|---|---|---|");
    let (tc, sc) = (&c.teacher, &c.student);
    let teacher_cell = |v: String| {
        if c.teacher_checkpoint.is_some() {
            "(loaded)".to_string()
        } else {
            v
        }
    };
    let rows: [(&str, String, String); 9] = [
        ("epochs", tc.epochs.to_string(), sc.epochs.to_string()),
        (
            "batch size",
            tc.batch_size.to_string(),
            sc.batch_size.to_string(),
        ),
        (
            "optimizer",
            format!("{:?}", tc.optimizer).to_lowercase(),
            format!("{:?}", sc.optimizer).to_lowercase(),
        ),
        ("learning rate", tc.lr.to_string(), sc.lr.to_string()),
        (
            "weight decay",
            tc.weight_decay.to_string(),
            sc.weight_decay.to_string(),
        ),
        (
            "momentum (SGD)",
            tc.momentum.to_string(),
            sc.momentum.to_string(),
        ),
        ("schedule", schedule(&tc.schedule), schedule(&sc.schedule)),
        ("augmentation", augment(&tc.augment), augment(&sc.augment)),
        (
            "seed",
            tc.seed.to_string(),
            if seeds > 1 {
                format!("{}…{}", sc.seed, sc.seed + seeds as u64 - 1)
            } else {
                sc.seed.to_string()
            },
        ),
    ];
    for (k, a, b) in rows {
        let _ = writeln!(w, "| {k} | {} | {b} |", teacher_cell(a));
    }
    let _ = writeln!(
        w,
        "\nKD: temperature T = {}, α = {}; label_fraction = {}; seeds = {}; data `{}`{}{}; f16 copies: {}.\n",
        c.kd.temperature,
        c.kd.alpha,
        c.label_fraction,
        c.seeds,
        c.data.display(),
        c.max_train.map(|n| format!("; max_train = {n}")).unwrap_or_default(),
        c.max_test.map(|n| format!("; max_test = {n}")).unwrap_or_default(),
        match (c.half, f16_files.is_empty()) {
            (false, _) => "not asked for".to_string(),
            (true, true) => "asked for, none written".to_string(),
            (true, false) => f16_files.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", "),
        }
    );
}

fn plots(w: &mut String, r: &Report) {
    let seeds = r.kd.len();
    let _ = writeln!(w, "## Plots\n");
    let _ =
        writeln!(
        w,
        "![test loss]({LOSS_PNG})\n\n[`{LOSS_PNG}`]({LOSS_PNG}): **test** cross-entropy per epoch \
         for the teacher, the baseline student and the KD student{}. The test loss is plotted \
         because it is comparable across the three runs; the KD student's training loss \
         (α·T²·KL + (1−α)·CE) is on a different scale from plain cross-entropy. Training losses \
         are in `metrics.jsonl`.\n",
        if seeds > 1 { " (students: mean over seeds)" } else { "" }
    );
    let _ = writeln!(
        w,
        "![test accuracy]({ACCURACY_PNG})\n\n[`{ACCURACY_PNG}`]({ACCURACY_PNG}): test accuracy \
         per epoch for the same three runs.\n"
    );
    if !r.kd_confusion.is_empty() {
        let _ = writeln!(
            w,
            "![KD confusion matrix]({CONFUSION_PNG})\n\n[`{CONFUSION_PNG}`]({CONFUSION_PNG}): the \
             final KD student{} on the test set; rows are true classes, columns predictions.",
            if seeds > 1 { " (first seed)" } else { "" }
        );
    }
}

fn augment(a: &crate::data::Augment) -> String {
    if !a.is_active() {
        return "none".into();
    }
    let mut parts = Vec::new();
    if a.crop_padding > 0 {
        parts.push(format!("random crop (padding {})", a.crop_padding));
    }
    if a.hflip {
        parts.push("horizontal flip".into());
    }
    parts.join(" + ")
}

/// A few lines for the CLI's final printout.
pub fn summary_lines(r: &Report) -> Vec<String> {
    let seeds = r.kd.len();
    let mut lines = Vec::new();
    let t = &r.teacher;
    lines.push(format!(
        "teacher   test {}  (best {}{})  {} train images  {} params",
        pct(t.final_accuracy),
        pct(t.best_accuracy),
        if t.history.is_empty() {
            ", loaded".to_string()
        } else {
            format!(" @ epoch {}", t.best_epoch)
        },
        r.teacher_train_images,
        thousands(r.teacher_stats.parameters)
    ));
    for (name, runs) in [("baseline", &r.baseline), ("kd      ", &r.kd)] {
        let best_epoch = if seeds == 1 {
            runs.first()
                .map(|s| format!(" @ epoch {}", s.best_epoch))
                .unwrap_or_default()
        } else {
            format!(", {seeds} seeds")
        };
        lines.push(format!(
            "{name}  test {}  (best {}{best_epoch})  {} train images  {} params",
            mean_pm(runs, |s| s.final_accuracy),
            mean_pm(runs, |s| s.best_accuracy),
            // The KD student's transfer set may be larger than the baseline's images.
            runs.first()
                .map_or(r.student_train_images, |s| s.train_images),
            thousands(r.student_stats.parameters)
        ));
    }
    lines.push(format!(
        "KD gain   {} final, {} best",
        points(r.kd_gain_final),
        points(r.kd_gain_best)
    ));
    lines.push(format!(
        "student   {:.1}x fewer parameters ({} f32, {} f16), {:.2}x faster at batch 1, {:.2}x the throughput at batch 256 on {}",
        r.compression,
        bytes(r.student_stats.bytes_f32),
        bytes(r.student_stats.bytes_f16),
        r.speedup_latency,
        r.speedup_throughput,
        r.device
    ));
    if let Some(saved) = r.teacher_seconds_saved {
        lines.push(format!(
            "offline KD: teacher logits cached in {:.2}s, about {:.1}s of teacher time saved",
            r.teacher_cache_seconds.unwrap_or(0.0),
            saved
        ));
    }
    if let Some(f) = &r.floor {
        let source = if f.peak_source.is_empty() {
            "measured at the end of the run"
        } else {
            &f.peak_source
        };
        lines.push(format!(
            "floor     {:.1}s at the peak of {:.1} GFLOP/s ({source}); the epochs took {:.1}s = {:.2}x the floor",
            f.floor_seconds, f.peak_gflops, f.seconds, f.times_floor
        ));
    }
    if let Some(l) = &r.load {
        lines.push(format!("machine   {}", l.describe()));
    }
    lines.push(format!("total     {:.1}s", r.total_seconds));
    lines
}
