//! The kernel-study ladders: every rung, CPU and WGSL, against the f64 reference on odd
//! shapes (sizes that are no tile multiple), through the same driver `distill bench --ladder`
//! uses. CPU rungs run at the SIMD level they are written for, the production kernels at every
//! level this CPU has; WGSL rungs on the best adapter (lavapipe in CI; with
//! `DISTILL_REQUIRE_GPU=1` a missing adapter fails instead of skipping).

mod common;

use distill::backend::gpu;
use distill::ladder::{self, CheckOutcome, LadderOp, LadderOptions, LadderReport, LadderTarget};
use distill_kernels::simd;

fn check(op: LadderOp, target: LadderTarget) -> Option<LadderReport> {
    if target != LadderTarget::Cpu {
        common::quiet_vulkan();
    }
    let opts = LadderOptions {
        op,
        target,
        check_only: true,
        ..LadderOptions::default()
    };
    match ladder::run(&opts, &mut |line| eprintln!("{line}")) {
        Ok(r) => Some(r),
        Err(e) if target != LadderTarget::Cpu => {
            if std::env::var("DISTILL_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("DISTILL_REQUIRE_GPU=1 but the GPU ladder could not run: {e}");
            }
            eprintln!("skipping GPU ladder: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// Every rung passed, or is unsupported for a reason `allowed` accepts; returns the names.
fn assert_correct(
    report: &LadderReport,
    allowed_unsupported: impl Fn(&str, &str) -> bool,
) -> Vec<String> {
    for c in &report.checks {
        match &c.outcome {
            CheckOutcome::Pass { shapes, .. } => assert!(*shapes >= 4, "{}", c.rung),
            CheckOutcome::Fail { why } => panic!("{} is wrong: {why}", c.rung),
            CheckOutcome::Unsupported { why } => assert!(
                allowed_unsupported(&c.rung, why),
                "{} reported unsupported on a device that supports it: {why}",
                c.rung
            ),
        }
    }
    assert!(report.timings.is_empty(), "check_only times nothing");
    report.checks.iter().map(|c| c.rung.clone()).collect()
}

#[test]
fn cpu_matmul_rungs_match_the_f64_reference() {
    let report = check(LadderOp::Matmul, LadderTarget::Cpu).expect("the CPU always runs");
    let rungs = distill_kernels::ladder::gemm_rungs();
    let names = assert_correct(&report, |name, _| {
        rungs.iter().any(|r| r.name == name && !r.is_supported())
    });
    for r in &rungs {
        assert!(
            names.contains(&r.name.to_string()),
            "{} not checked",
            r.name
        );
    }
    for level in simd::available() {
        let name = format!("gemm_production@{level}");
        assert!(names.contains(&name), "{name} not checked");
    }
    // This ladder's top rungs run wherever the CPU has AVX2: they must not be skipped there.
    if simd::SimdLevel::Avx2Fma.is_supported() {
        for name in ["gemm_05_avx2", "gemm_07_threads"] {
            let row = report.checks.iter().find(|c| c.rung == name).unwrap();
            assert!(matches!(row.outcome, CheckOutcome::Pass { .. }), "{name}");
        }
    }
}

#[test]
fn gpu_matmul_rungs_match_the_f64_reference() {
    let Some(report) = check(LadderOp::Matmul, LadderTarget::Gpu(None)) else {
        return;
    };
    // The adapter the ladder opened (its report says whether it has the optional features).
    let adapter = gpu::list_adapters()
        .into_iter()
        .find(|a| report.device.starts_with(&format!("gpu:{} ", a.index)))
        .expect("the ladder names the adapter it ran on");
    let names = assert_correct(&report, |name, why| match name {
        "matmul_09_subgroup" => !adapter.subgroup || why.contains("do not fit"),
        "matmul_10_f16" => !adapter.shader_f16,
        _ => false,
    });
    for i in 1..=11 {
        let prefix = format!("matmul_{i:02}_");
        assert!(
            names.iter().any(|n| n.starts_with(&prefix)),
            "{prefix} not checked"
        );
    }
    assert!(names.contains(&"matmul_production".to_string()));
}

#[test]
fn unknown_ladders_and_bad_peaks_are_errors() {
    assert!(LadderOp::parse("fft").is_err());
    assert_eq!(LadderOp::parse(" MatMul ").unwrap(), LadderOp::Matmul);
    let opts = LadderOptions {
        peak_gflops: Some(-1.0),
        ..LadderOptions::default()
    };
    assert!(ladder::run(&opts, &mut |_| {}).is_err());
}

#[test]
fn cpu_conv_rungs_match_the_f64_reference() {
    let report = check(LadderOp::Conv, LadderTarget::Cpu).expect("the CPU always runs");
    let names = assert_correct(&report, |_, _| false);
    let registry = distill_kernels::ladder::conv_rungs()
        .into_iter()
        .chain(distill_kernels::ladder::conv_weight_grad_rungs());
    for r in registry {
        assert!(
            names.contains(&r.name.to_string()),
            "{} not checked",
            r.name
        );
    }
    for level in simd::available() {
        for name in [
            format!("conv_production@{level}"),
            format!("conv_wgrad_production@{level}"),
        ] {
            assert!(names.contains(&name), "{name} not checked");
        }
    }
}

#[test]
fn gpu_conv_rungs_match_the_f64_reference() {
    let Some(report) = check(LadderOp::Conv, LadderTarget::Gpu(None)) else {
        return;
    };
    let names = assert_correct(&report, |_, _| false);
    for name in [
        "conv2d_01_direct",
        "conv2d_02_im2col_gemm",
        "conv2d_production",
        "conv2d_01_direct (dW)",
        "conv2d_02_im2col_gemm (dW)",
        "conv2d_03_wgrad_split_k (dW)",
        "conv2d_production (dW)",
    ] {
        assert!(names.contains(&name.to_string()), "{name} not checked");
    }
}
