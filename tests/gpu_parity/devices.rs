//! Adapters, profiling, and device specs.

use distill::backend::gpu::{self, GpuBackend};
use distill::backend::{Device, DeviceKind, DeviceSpec};

use crate::gpu_or_skip;

#[test]
fn adapters_are_listed_and_profiling_reports_kernels() {
    let Some(_) = gpu_or_skip() else { return };
    let list = gpu::list_adapters();
    assert!(!list.is_empty());
    let text = list[0].to_string();
    assert!(
        text.contains("gpu:0") && text.contains("max storage binding"),
        "{text}"
    );
    assert!(gpu::open_index(list.len()).is_err());

    let g = GpuBackend::open_best().unwrap();
    if !g.device().set_profiling(true).unwrap() {
        eprintln!("adapter has no TIMESTAMP_QUERY: profiling not tested");
        return;
    }
    let be = g.device();
    let x = be.backend().upload_f32(&[1.0; 100]).unwrap();
    let y = be.backend().zeros(100).unwrap();
    be.backend().relu(&x, &y).unwrap();
    be.backend().scale(&x, 2.0, &y).unwrap();
    be.backend().flush().unwrap();
    let report = be.kernel_times().unwrap();
    assert!(
        report.iter().any(|t| t.name == "relu" && t.calls == 1),
        "{report:?}"
    );
    assert!(
        report
            .iter()
            .any(|t| t.name == "scale" && t.total_ms >= 0.0),
        "{report:?}"
    );
}

#[test]
fn profiling_is_reachable_through_device() {
    // The CPU backend cannot time kernels: the trait defaults.
    let cpu = Device::cpu();
    assert!(!cpu.set_profiling(true).unwrap());
    assert!(cpu.kernel_times().unwrap().is_empty());

    let Some(_) = gpu_or_skip() else { return };
    // A private device: profiling is per device and other tests run in parallel.
    let dev = GpuBackend::open_best().unwrap().device();
    if !dev.set_profiling(true).unwrap() {
        eprintln!("adapter has no TIMESTAMP_QUERY: profiling not tested");
        return;
    }
    let be = dev.backend();
    let x = be.upload_f32(&[1.0; 100]).unwrap();
    let y = be.zeros(100).unwrap();
    be.relu(&x, &y).unwrap();
    be.relu(&x, &y).unwrap();
    // kernel_times submits pending work itself.
    let times = dev.kernel_times().unwrap();
    let relu = times.iter().find(|t| t.name == "relu").expect("relu timed");
    assert_eq!(relu.calls, 2, "{times:?}");
    assert!(relu.total_ms >= 0.0);
    assert!(!dev.set_profiling(false).unwrap());
    assert!(dev.kernel_times().unwrap().is_empty());
}

#[test]
fn device_specs_parse_and_open() {
    assert_eq!(DeviceSpec::parse(" auto ").unwrap(), DeviceSpec::Auto);
    assert_eq!(DeviceSpec::parse("cpu").unwrap(), DeviceSpec::Cpu);
    assert_eq!(DeviceSpec::parse("gpu").unwrap(), DeviceSpec::Gpu);
    assert_eq!(
        "gpu:3".parse::<DeviceSpec>().unwrap(),
        DeviceSpec::GpuIndex(3)
    );
    for spec in ["auto", "cpu", "gpu", "gpu:12"] {
        assert_eq!(DeviceSpec::parse(spec).unwrap().to_string(), spec);
    }
    for bad in ["tpu", "gpu:", "gpu:x", "gpu:-1", "GPU"] {
        let e = DeviceSpec::parse(bad).unwrap_err().to_string();
        assert!(
            e.contains(&format!("unknown device '{bad}'")) && e.contains("gpu:N"),
            "{e}"
        );
        assert!(!e.contains("--"), "a library error names no CLI flag: {e}");
    }
    assert!(Device::from_spec("cpu").unwrap().is_cpu());
    // `auto` never picks a software adapter such as lavapipe.
    let auto = Device::from_spec("auto").unwrap();
    assert_ne!(auto.kind(), DeviceKind::SoftwareGpu);

    let Some(_) = gpu_or_skip() else { return };
    let n = gpu::list_adapters().len();
    assert!(!Device::from_spec("gpu").unwrap().is_cpu());
    assert!(!Device::from_spec("gpu:0").unwrap().is_cpu());
    let e = Device::from_spec(&format!("gpu:{n}"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("cannot open device `gpu:{n}`")) && e.contains("distill devices"),
        "{e}"
    );
    assert!(!e.contains("--"), "{e}");
}
