//! Compiles every WGSL module the project ships on one adapter and says, per module, whether
//! its compiler took it: the production modules with every GEMM tile candidate the adapter
//! fits, and every kernel-study rung, on a device opened with the optional features rungs use
//! where the adapter offers them. A rung whose feature the adapter lacks is reported as
//! unsupported, never silently dropped. A browser's WGSL compiler is stricter than naga in
//! places, so this runs in the page as well as natively.

use serde::Serialize;

use super::context::Context;
use super::table::Module;
use super::tiles::{Tile, Tiles};
use crate::Result;

/// The kernel-study rungs of `shaders/ladder/`: name, text and the optional features they
/// need (the ladder drivers in `src/ladder/` list the same files with how to run them).
pub(crate) const LADDER_WGSL: [(&str, &str, wgpu::Features); 13] = {
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

/// Compiles every shipped module on `adapter` (see the module header).
pub async fn check_shaders(adapter: &wgpu::Adapter) -> Result<Vec<ShaderCheck>> {
    let extra = wgpu::Features::SUBGROUP | wgpu::Features::SHADER_F16;
    let ctx = Context::open_async(adapter, extra).await?;
    let mut out = Vec::new();
    for module in Module::ALL {
        let tiled = matches!(module, Module::Matmul | Module::Conv2d);
        let tiles: Vec<Option<Tile>> = if tiled {
            Tile::candidates_for(&ctx.limits)
                .into_iter()
                .map(Some)
                .collect()
        } else {
            vec![None]
        };
        for tile in tiles {
            let t = tile.unwrap_or(Tile::DEFAULT);
            let source = module.source(Tiles { matmul: t, conv: t });
            let name = match tile {
                Some(t) => format!("{} [tile {t}]", module.file().0),
                None => module.file().0.to_string(),
            };
            out.push(compile(&ctx, name, &source).await);
        }
    }
    for (name, source, needs) in LADDER_WGSL {
        let module = format!("ladder/{name}.wgsl");
        let missing = needs - ctx.features;
        out.push(if missing.is_empty() {
            compile(&ctx, module, source).await
        } else {
            ShaderCheck {
                module,
                status: ShaderStatus::Unsupported(format!("needs {missing:?}")),
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
        let tiled = Tile::candidates_for(&adapter.limits()).len();
        assert_eq!(
            checks.len(),
            (Module::ALL.len() - 2) + 2 * tiled + LADDER_WGSL.len()
        );
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
