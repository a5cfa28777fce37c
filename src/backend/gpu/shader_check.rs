//! Compiles every WGSL module the project ships on one adapter and says, per module, whether
//! its compiler took it: the production modules with every GEMM tile candidate the adapter
//! fits, and every kernel-study rung, on a device opened with the optional features rungs use
//! where the adapter offers them. A rung whose feature the adapter lacks is reported as
//! unsupported, never silently dropped. A browser's WGSL compiler is stricter than naga in
//! places, so this runs in the page as well as natively.

use serde::Serialize;

use super::context::Context;
use super::table::{Module, ALL_KERNELS};
use super::tiles::{Tile, Tiles};
use crate::Result;

/// The kernel-study rungs of `shaders/ladder/`: name, text and the optional features they
/// need (the ladder drivers in `src/ladder/` list the same files with how to run them).
pub(crate) const LADDER_WGSL: [(&str, &str, wgpu::Features); 14] = {
    const NONE: wgpu::Features = wgpu::Features::empty();
    macro_rules! rung {
        ($name:literal, $needs:expr) => {
            (
                $name,
                include_str!(concat!("../../../shaders/ladder/", $name, ".wgsl")),
                $needs,
            )
        };
    }
    [
        rung!("matmul_01_naive", NONE),
        rung!("matmul_02_coalesced", NONE),
        rung!("matmul_03_workgroup_tiles", NONE),
        rung!("matmul_04_register_tile_1d", NONE),
        rung!("matmul_05_register_tile_2d", NONE),
        rung!("matmul_06_vec4", NONE),
        rung!("matmul_07_conflict_free", NONE),
        rung!("matmul_08_double_buffer", NONE),
        rung!("matmul_09_subgroup", wgpu::Features::SUBGROUP),
        rung!("matmul_10_f16", wgpu::Features::SHADER_F16),
        rung!("matmul_11_registers", NONE),
        rung!("conv2d_01_direct", NONE),
        rung!("conv2d_02_im2col_gemm", NONE),
        rung!("conv2d_03_wgrad_split_k", NONE),
    ]
};

/// What the adapter's compiler said of one module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "lowercase")]
pub enum ShaderStatus {
    Compiled,
    /// The compiler's error messages.
    Failed(String),
    /// The module needs features the adapter lacks (named).
    Unsupported(String),
}

/// One module compiled: `matmul.wgsl [tile 4x4]`, `ladder/matmul_09_subgroup.wgsl`, …
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShaderCheck {
    pub module: String,
    #[serde(flatten)]
    pub status: ShaderStatus,
}

/// One WGSL module as the engine or a kernel study compiles it (see [`shipped_modules`]).
#[derive(Clone, Debug)]
pub struct ShippedModule {
    /// How [`check_shaders`] names it: `matmul.wgsl [tile 64×64 (4×4 per invocation)]`,
    /// `softmax.wgsl`, `ladder/matmul_09_subgroup.wgsl`.
    pub name: String,
    /// The file under `shaders/` it is built from (`matmul.wgsl`,
    /// `ladder/matmul_09_subgroup.wgsl`); the `shaders/common/` files it uses are appended
    /// to it in [`ShippedModule::wgsl`].
    pub file: String,
    /// The text compiled: the file, then the shared code it uses, the tile's constants above
    /// the tiled GEMM loop.
    pub wgsl: String,
    /// The optional device features the module needs (SUBGROUP, SHADER_F16, …).
    pub needs: wgpu::Features,
    /// The GEMM tile it is built with (matmul.wgsl and conv2d.wgsl: one module per
    /// staged shape of [`Tile::CANDIDATES`]); `None` for the others.
    pub tile: Option<Tile>,
    /// The pipelines the engine creates from it, one per kernel of its table: entry point and
    /// override constants. Empty for the kernel-study rungs, whose entry points are compiled
    /// with the constants' defaults.
    pub pipelines: Vec<(&'static str, &'static [(&'static str, f64)])>,
}

/// Every WGSL module the project ships, as it is compiled: each production module of the
/// kernel table (matmul and conv2d once per GEMM tile candidate, whether or not a given
/// adapter fits it), then every kernel-study rung. The one list [`check_shaders`] and the
/// translation test (`tests/shader_translation.rs`) both walk.
pub fn shipped_modules() -> Vec<ShippedModule> {
    let mut out = Vec::new();
    for module in Module::ALL {
        let file = module.file().0;
        let pipelines: Vec<_> = ALL_KERNELS
            .iter()
            .filter(|k| k.module == module)
            .map(|k| (k.entry, k.constants))
            .collect();
        let tiled = matches!(module, Module::Matmul | Module::Conv2d);
        let tiles: Vec<Option<Tile>> = if tiled {
            // The registers-only loop is another entry point of the same text (matmul.wgsl)
            // or a module of its own (conv2d_registers.wgsl): nothing to build per tile.
            Tile::CANDIDATES
                .into_iter()
                .filter(|t| !t.registers)
                .map(Some)
                .collect()
        } else {
            vec![None]
        };
        for tile in tiles {
            let t = tile.unwrap_or(Tile::DEFAULT);
            out.push(ShippedModule {
                name: match tile {
                    Some(t) => format!("{file} [tile {t}]"),
                    None => file.to_string(),
                },
                file: file.to_string(),
                wgsl: module.source(Tiles { matmul: t, conv: t }),
                needs: module.needs(),
                tile,
                pipelines: pipelines.clone(),
            });
        }
    }
    for (name, source, needs) in LADDER_WGSL {
        let file = format!("ladder/{name}.wgsl");
        out.push(ShippedModule {
            name: file.clone(),
            file,
            wgsl: source.to_string(),
            needs,
            tile: None,
            pipelines: Vec::new(),
        });
    }
    out
}

/// Compiles every shipped module ([`shipped_modules`]) on `adapter` (see the module header).
/// A tile the adapter's workgroup memory cannot hold is left out, as the engine never builds
/// it there.
pub async fn check_shaders(adapter: &wgpu::Adapter) -> Result<Vec<ShaderCheck>> {
    let extra = wgpu::Features::SUBGROUP | wgpu::Features::SHADER_F16;
    let ctx = Context::open_async(adapter, extra).await?;
    let mut out = Vec::new();
    for module in shipped_modules() {
        if module.tile.is_some_and(|t| !t.fits(&ctx.limits)) {
            continue;
        }
        let missing = module.needs - ctx.features;
        out.push(if missing.is_empty() {
            compile(&ctx, module.name, &module.wgsl).await
        } else {
            ShaderCheck {
                module: module.name,
                status: ShaderStatus::Unsupported(format!(
                    "needs {}",
                    super::context::feature_words(missing)
                )),
            }
        });
    }
    ctx.check()?;
    Ok(out)
}

async fn compile(ctx: &Context, module: String, source: &str) -> ShaderCheck {
    let compiled = ctx
        .device
        .create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&module),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
    let info = compiled.get_compilation_info().await;
    let errors: Vec<String> = info
        .messages
        .iter()
        .filter(|m| m.message_type == wgpu::CompilationMessageType::Error)
        .map(|m| {
            let line = m.location.map_or(0, |l| l.line_number);
            format!("line {line}: {}", m.message)
        })
        .collect();
    // Natively a failed module also raises a validation error; it is reported here, so it
    // must not surface later from the device's error sink.
    let _ = ctx.errors.take();
    ShaderCheck {
        module,
        status: if errors.is_empty() {
            ShaderStatus::Compiled
        } else {
            ShaderStatus::Failed(errors.join("; "))
        },
    }
}

/// [`check_shaders`] on the adapter `distill --device gpu` opens (waits on this thread);
/// `None` when there is no adapter.
#[cfg(not(target_arch = "wasm32"))]
pub fn check_shaders_on_best() -> Result<Option<Vec<ShaderCheck>>> {
    match super::context::best_adapter(true) {
        Some(adapter) => pollster::block_on(check_shaders(&adapter)).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter() -> Option<wgpu::Adapter> {
        let a = super::super::context::best_adapter(true);
        if a.is_none() && std::env::var("DISTILL_REQUIRE_GPU").as_deref() == Ok("1") {
            panic!("DISTILL_REQUIRE_GPU=1 but there is no GPU adapter");
        }
        a
    }

    #[test]
    fn every_shipped_module_compiles_or_is_named_unsupported() {
        let Some(adapter) = adapter() else { return };
        let checks = pollster::block_on(check_shaders(&adapter)).unwrap();
        let features = adapter.features();
        for c in &checks {
            let needs_missing = LADDER_WGSL.iter().any(|(name, _, needs)| {
                c.module == format!("ladder/{name}.wgsl") && !features.contains(*needs)
            });
            match &c.status {
                ShaderStatus::Compiled => assert!(!needs_missing, "{}", c.module),
                ShaderStatus::Unsupported(_) => assert!(needs_missing, "{}", c.module),
                ShaderStatus::Failed(e) => panic!("{}: {e}", c.module),
            }
        }
        let tiled = Tile::candidates_for(&adapter.limits())
            .iter()
            .filter(|t| !t.registers)
            .count();
        assert_eq!(
            checks.len(),
            (Module::ALL.len() - 2) + 2 * tiled + LADDER_WGSL.len()
        );
    }

    #[test]
    fn shipped_modules_lists_every_tile_and_rung_once() {
        let modules = shipped_modules();
        assert_eq!(
            modules.len(),
            (Module::ALL.len() - 2) + 2 * (Tile::CANDIDATES.len() - 1) + LADDER_WGSL.len()
        );
        let mut names: Vec<&str> = modules.iter().map(|m| m.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), modules.len(), "duplicate module names");
        let f16 = modules
            .iter()
            .find(|m| m.file == "ladder/matmul_10_f16.wgsl")
            .unwrap();
        assert_eq!(f16.needs, wgpu::Features::SHADER_F16);
        let matmul = modules.iter().find(|m| m.file == "matmul.wgsl").unwrap();
        assert_eq!(matmul.tile, Some(Tile::DEFAULT));
        assert_eq!(
            matmul.pipelines.len(),
            8,
            "one per transpose, staged and registers-only"
        );
        assert!(matmul.wgsl.contains("const TM: u32 = 4u;"));
    }

    #[test]
    fn a_broken_module_is_reported_with_its_line() {
        let Some(adapter) = adapter() else { return };
        let ctx =
            pollster::block_on(Context::open_async(&adapter, wgpu::Features::empty())).unwrap();
        let src = "@compute @workgroup_size(1)\nfn main() {\n  let x: f32 = undefined_name;\n}\n";
        let check = pollster::block_on(compile(&ctx, "broken.wgsl".into(), src));
        match check.status {
            ShaderStatus::Failed(e) => assert!(e.contains("line 3"), "{e}"),
            other => panic!("a broken module was reported as {other:?}"),
        }
        assert!(
            ctx.check().is_ok(),
            "the failure must not linger in the error sink"
        );
    }
}
