//! Every WGSL module distill ships, through every shading language wgpu's backends compile
//! it to: naga (the translator inside wgpu) validates each module with the capabilities it
//! declares, then writes SPIR-V (Vulkan), MSL (Metal), HLSL (DX12) and GLSL (OpenGL ES) for
//! every pipeline the engine creates from it, with the options wgpu-hal's backends use on the
//! least capable device that offers the module's features. No GPU needed: this is how the
//! Metal and DX12 paths are checked on a Linux CI machine. A browser's WebGPU takes the WGSL
//! itself (its own compiler: the page's shader check, `tests/browser`).
//!
//! When `spirv-val` (Debian's `spirv-tools`) is on the PATH, each SPIR-V module is also run
//! through it for its Vulkan version; `DISTILL_REQUIRE_SPIRV_VAL=1` makes its absence a
//! failure (CI sets it). The module list is the library's own
//! ([`shipped_modules`]), and a second test checks that every `.wgsl` file under `shaders/` is
//! in it.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use distill::backend::gpu::shader_check::{shipped_modules, ShippedModule};
use naga::back::{glsl, hlsl, msl, spv};
use naga::proc::{BoundsCheckPolicies, BoundsCheckPolicy};
use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use naga::{AddressSpace, Module, ShaderStage, StorageAccess};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Lang {
    Spirv,
    Msl,
    Hlsl,
    Glsl,
}

const LANGS: [Lang; 4] = [Lang::Spirv, Lang::Msl, Lang::Hlsl, Lang::Glsl];

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lang::Spirv => "SPIR-V (Vulkan)",
            Lang::Msl => "MSL (Metal)",
            Lang::Hlsl => "HLSL (DX12)",
            Lang::Glsl => "GLSL ES (OpenGL)",
        })
    }
}

/// Translations a language refuses, by shader file, with the reason. Every other failure
/// fails the test, and so does an entry here that no longer fails (the list stays true).
const REFUSED: &[(&str, Lang, &str)] = &[(
    "ladder/matmul_10_f16.wgsl",
    Lang::Glsl,
    "GLSL ES has no 16-bit float type: naga's GLSL writer stops at the first f16 (\"A scalar \
     with an unsupported width was requested\"). Only wgpu's OpenGL backend takes GLSL; it \
     never offers SHADER_F16, and distill does not build it (its wgpu backends are Vulkan, \
     Metal, DX12 and the browser's WebGPU), so no device ever runs this rung as GLSL.",
)];

fn refused(file: &str, lang: Lang) -> Option<&'static str> {
    REFUSED
        .iter()
        .find(|(f, l, _)| *f == file && *l == lang)
        .map(|(_, _, why)| *why)
}

/// The capabilities wgpu validates a module with on a device opened with `features` (wgpu's
/// own mapping), and nothing more: a module that uses a feature it does not declare fails.
fn capabilities(features: wgpu::Features) -> Capabilities {
    wgpu_naga_bridge::features_to_naga_capabilities(features, wgpu::DownlevelFlags::empty())
}

/// Runtime checks on, as wgpu compiles a module by default.
fn bounds_checks() -> BoundsCheckPolicies {
    BoundsCheckPolicies {
        index: BoundsCheckPolicy::Restrict,
        buffer: BoundsCheckPolicy::Restrict,
        image_load: BoundsCheckPolicy::Restrict,
        binding_array: BoundsCheckPolicy::Unchecked,
    }
}

/// One pipeline: a compute entry point with its override constants.
struct Pipeline {
    entry: String,
    constants: Vec<(&'static str, f64)>,
}

impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.entry)?;
        for (name, value) in &self.constants {
            write!(f, " {name}={value}")?;
        }
        Ok(())
    }
}

/// The pipelines the engine creates from `m` (its kernels), and every other compute entry
/// point of the module at the constants' defaults (the rungs, and anything the table lacks).
fn pipelines(m: &ShippedModule, module: &Module) -> Vec<Pipeline> {
    let mut out: Vec<Pipeline> = m
        .pipelines
        .iter()
        .map(|(entry, constants)| Pipeline {
            entry: entry.to_string(),
            constants: constants.to_vec(),
        })
        .collect();
    for ep in &module.entry_points {
        assert_eq!(ep.stage, ShaderStage::Compute, "{}: {}", m.name, ep.name);
        if !out.iter().any(|p| p.entry == ep.name) {
            out.push(Pipeline {
                entry: ep.name.clone(),
                constants: Vec::new(),
            });
        }
    }
    out
}

/// The module's resources in declaration order: (binding, writable).
fn resources(module: &Module) -> Vec<(naga::ResourceBinding, bool)> {
    module
        .global_variables
        .iter()
        .filter_map(|(_, g)| {
            let writable = match g.space {
                AddressSpace::Storage { access } => access.contains(StorageAccess::STORE),
                _ => false,
            };
            g.binding.map(|b| (b, writable))
        })
        .collect()
}

/// What one translation produced (SPIR-V is kept for spirv-val).
enum Output {
    Spirv(Vec<u32>, &'static str),
    Text,
}

fn translate(
    lang: Lang,
    needs: wgpu::Features,
    module: &Module,
    info: &ModuleInfo,
    entry: &str,
) -> Result<Output, String> {
    let stage = ShaderStage::Compute;
    match lang {
        Lang::Spirv => {
            // wgpu-hal's Vulkan backend writes the newest SPIR-V the device's Vulkan version
            // takes; subgroup operations need Vulkan 1.1 (SPIR-V 1.3), the rest runs on 1.0.
            let subgroups = needs.contains(wgpu::Features::SUBGROUP);
            let (version, env) = if subgroups {
                ((1, 3), "vulkan1.1")
            } else {
                ((1, 0), "vulkan1.0")
            };
            // The capabilities wgpu-hal allows for these features, no others.
            let mut caps = vec![
                spv::Capability::Shader,
                spv::Capability::Matrix,
                spv::Capability::Sampled1D,
                spv::Capability::Image1D,
                spv::Capability::ImageQuery,
                spv::Capability::DerivativeControl,
                spv::Capability::StorageImageExtendedFormats,
            ];
            if subgroups {
                caps.extend([
                    spv::Capability::GroupNonUniform,
                    spv::Capability::GroupNonUniformVote,
                    spv::Capability::GroupNonUniformArithmetic,
                    spv::Capability::GroupNonUniformBallot,
                    spv::Capability::GroupNonUniformShuffle,
                    spv::Capability::GroupNonUniformShuffleRelative,
                    spv::Capability::GroupNonUniformQuad,
                ]);
            }
            if needs.contains(wgpu::Features::SHADER_F16) {
                caps.push(spv::Capability::Float16);
            }
            let options = spv::Options {
                lang_version: version,
                capabilities: Some(caps.into_iter().collect()),
                bounds_check_policies: bounds_checks(),
                ..Default::default()
            };
            let pipeline = spv::PipelineOptions {
                shader_stage: stage,
                entry_point: entry.to_string(),
            };
            spv::write_vec(module, info, &options, Some(&pipeline))
                .map(|words| Output::Spirv(words, env))
                .map_err(|e| e.to_string())
        }
        Lang::Msl => {
            // Buffers in declaration order, then the sizes buffer for runtime-sized arrays,
            // as wgpu-hal's Metal backend lays them out; a missing binding is an error.
            let mut map = msl::EntryPointResources::default();
            let res = resources(module);
            for (slot, (binding, writable)) in res.iter().enumerate() {
                map.resources.insert(
                    *binding,
                    msl::BindTarget {
                        buffer: Some(slot as u8),
                        mutable: *writable,
                        ..Default::default()
                    },
                );
            }
            map.sizes_buffer = Some(res.len() as u8);
            // Metal 2.0 (macOS 10.13, iOS 11); subgroups need the SIMD-group functions of
            // MSL 2.1, which wgpu-hal only offers on later GPU families anyway.
            let subgroups = needs.contains(wgpu::Features::SUBGROUP);
            let options = msl::Options {
                lang_version: if subgroups { (2, 1) } else { (2, 0) },
                per_entry_point_map: [(entry.to_string(), map)].into_iter().collect(),
                fake_missing_bindings: false,
                bounds_check_policies: bounds_checks(),
                ..Default::default()
            };
            let pipeline = msl::PipelineOptions {
                entry_point: Some((stage, entry.to_string())),
                ..Default::default()
            };
            msl::write_string(module, info, &options, &pipeline)
                .map(|_| Output::Text)
                .map_err(|e| e.to_string())
        }
        Lang::Hlsl => {
            // wgpu-hal's DX12 backend needs shader model 6.0 (DXC) and offers SHADER_F16
            // only from 6.2 on.
            let options = hlsl::Options {
                shader_model: if needs.contains(wgpu::Features::SHADER_F16) {
                    hlsl::ShaderModel::V6_2
                } else {
                    hlsl::ShaderModel::V6_0
                },
                ..Default::default()
            };
            let pipeline = hlsl::PipelineOptions {
                entry_point: Some((stage, entry.to_string())),
            };
            let mut out = String::new();
            hlsl::Writer::new(&mut out, &options, &pipeline)
                .write(module, info, None)
                .map(|_| Output::Text)
                .map_err(|e| e.to_string())
        }
        Lang::Glsl => {
            // OpenGL ES 3.1, the first with compute shaders; bindings numbered in order.
            let mut options = glsl::Options {
                version: glsl::Version::new_gles(310),
                ..Default::default()
            };
            for (i, (binding, _)) in resources(module).iter().enumerate() {
                options.binding_map.insert(*binding, i as u8);
            }
            let pipeline = glsl::PipelineOptions {
                shader_stage: stage,
                entry_point: entry.to_string(),
                multiview: None,
            };
            let mut out = String::new();
            glsl::Writer::new(&mut out, module, info, &options, &pipeline, bounds_checks())
                .and_then(|mut w| w.write())
                .map(|_| Output::Text)
                .map_err(|e| e.to_string())
        }
    }
}

/// `spirv-val`, when it is installed (`None` otherwise, unless CI requires it).
fn spirv_val() -> Option<&'static str> {
    let found = Command::new("spirv-val")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("DISTILL_REQUIRE_SPIRV_VAL").as_deref() == Ok("1") {
            panic!("DISTILL_REQUIRE_SPIRV_VAL=1 but spirv-val is not on the PATH (apt-get install spirv-tools)");
        }
        eprintln!("spirv-val not found (apt-get install spirv-tools): SPIR-V is not validated");
        return None;
    }
    Some("spirv-val")
}

/// Runs `spirv-val --target-env env` on `words`; `Err` carries its messages.
fn validate_spirv(tool: &str, words: &[u32], env: &str) -> Result<(), String> {
    let mut child = Command::new(tool)
        .args(["--target-env", env, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{tool}: {e}"))?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(&bytes)
        .map_err(|e| format!("{tool}: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{tool}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "spirv-val --target-env {env}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn every_shipped_module_translates_to_every_backend_language() {
    let modules = shipped_modules();
    let tool = spirv_val();
    let mut failures = Vec::new();
    let mut refusals_seen = BTreeSet::new();
    let (mut translations, mut validated) = (0, 0);
    for m in &modules {
        let module = match naga::front::wgsl::parse_str(&m.wgsl) {
            Ok(module) => module,
            Err(e) => {
                failures.push(format!("{}: {}", m.name, e.emit_to_string(&m.wgsl)));
                continue;
            }
        };
        let info =
            match Validator::new(ValidationFlags::all(), capabilities(m.needs)).validate(&module) {
                Ok(info) => info,
                Err(e) => {
                    failures.push(format!(
                        "{} (validated with {:?}): {}",
                        m.name,
                        m.needs,
                        e.emit_to_string(&m.wgsl)
                    ));
                    continue;
                }
            };
        // Each feature a module declares is needed: without it the module does not validate.
        let known = wgpu::Features::SUBGROUP | wgpu::Features::SHADER_F16;
        if !known.contains(m.needs) {
            failures.push(format!(
                "{}: needs {:?}, which this test does not know how to translate for",
                m.name,
                m.needs - known
            ));
        }
        for feature in [wgpu::Features::SUBGROUP, wgpu::Features::SHADER_F16] {
            if m.needs.contains(feature)
                && Validator::new(ValidationFlags::all(), capabilities(m.needs - feature))
                    .validate(&module)
                    .is_ok()
            {
                failures.push(format!(
                    "{}: declares {feature:?} but validates without it (shader_check.rs)",
                    m.name
                ));
            }
        }
        for p in pipelines(m, &module) {
            let mut constants = naga::back::PipelineConstants::default();
            for (name, value) in &p.constants {
                constants.insert(name.to_string(), *value);
            }
            let (resolved, resolved_info) = match naga::back::pipeline_constants::process_overrides(
                &module,
                &info,
                Some((ShaderStage::Compute, &p.entry)),
                &constants,
            ) {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{} [{p}]: override constants: {e}", m.name));
                    continue;
                }
            };
            for lang in LANGS {
                translations += 1;
                let result = translate(lang, m.needs, &resolved, &resolved_info, &p.entry);
                match (result, refused(&m.file, lang)) {
                    (Ok(_), Some(_)) => failures.push(format!(
                        "{} [{p}] → {lang}: translated, but REFUSED lists it (remove the entry)",
                        m.name
                    )),
                    (Ok(Output::Spirv(words, env)), None) => {
                        if let Some(tool) = tool {
                            validated += 1;
                            if let Err(e) = validate_spirv(tool, &words, env) {
                                failures.push(format!("{} [{p}] → {lang}: {e}", m.name));
                            }
                        }
                    }
                    (Ok(Output::Text), None) => {}
                    (Err(e), Some(_)) => {
                        eprintln!("{} [{p}] → {lang}: refused, as listed: {e}", m.name);
                        refusals_seen.insert((m.file.clone(), lang));
                    }
                    (Err(e), None) => failures.push(format!("{} [{p}] → {lang}: {e}", m.name)),
                }
            }
        }
    }
    for (file, lang, _) in REFUSED {
        if !refusals_seen.contains(&(file.to_string(), *lang)) {
            failures.push(format!(
                "REFUSED lists {file} → {lang}, but no translation of it was refused"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures ({translations} translations):\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    eprintln!(
        "{} modules, {translations} translations ({} refused as listed), {validated} SPIR-V \
         modules through spirv-val",
        modules.len(),
        refusals_seen.len()
    );
}

/// The `.wgsl` files of `dir` (not recursive), as paths relative to `shaders/`.
fn wgsl_files(shaders: &Path, sub: &str) -> Vec<String> {
    let dir = shaders.join(sub);
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if sub.is_empty() {
                name
            } else {
                format!("{sub}/{name}")
            }
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_shader_file_on_disk_is_a_shipped_module() {
    let shaders = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let modules = shipped_modules();
    let shipped: BTreeSet<&str> = modules.iter().map(|m| m.file.as_str()).collect();
    let mut files = wgsl_files(&shaders, "");
    files.extend(wgsl_files(&shaders, "ladder"));
    assert!(files.len() >= 20, "only {} shader files found", files.len());
    let missing: Vec<&String> = files
        .iter()
        .filter(|f| !shipped.contains(f.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "shader files that no shipped module builds (add them to the kernel table or to \
         LADDER_WGSL in src/backend/gpu/shader_check.rs): {missing:?}"
    );
    for f in &shipped {
        assert!(
            files.iter().any(|x| x == f),
            "{f} is shipped but not on disk"
        );
    }
    // The shared fragments are covered through the modules that append them; one that no
    // module appends would never be compiled.
    for common in wgsl_files(&shaders, "common") {
        let marker = format!("// ---- shaders/{common} ----");
        assert!(
            modules.iter().any(|m| m.wgsl.contains(&marker)),
            "shaders/{common} is appended to no shipped module"
        );
    }
    assert!(
        std::fs::read_dir(&shaders)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_dir())
            .all(|e| ["common", "ladder"].contains(&e.file_name().to_str().unwrap())),
        "a new folder under shaders/: teach this test and shipped_modules() about it"
    );
}
