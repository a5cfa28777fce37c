//! The kernel table: the WGSL modules (with the shared code of `shaders/common/` they use) and
//! every kernel as an entry point of a module, its override constants, its storage bindings
//! and the optional device features it needs.

use super::tiles::Tiles;

/// The WGSL files, one per kernel family (mirroring kernels/src).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Module {
    Matmul,
    Conv2d,
    /// conv2d's products without workgroup memory (the [`Tile::REGISTERS`](super::tiles::Tile::REGISTERS) loop).
    Conv2dRegisters,
    Pool,
    Softmax,
    Elementwise,
    Optim,
    Reduce,
    Mse,
    /// The device peaks `distill bench` measures (no op uses it).
    Bench,
}

/// A WGSL file: its name under `shaders/` and its text.
type Wgsl = (&'static str, &'static str);

// Shared helpers. WGSL has no #include, so [`Module::source`] appends the ones a shader uses
// after its own text (after, so compiler errors keep the shader file's line numbers).
const GRID: Wgsl = (
    "common/grid.wgsl",
    include_str!("../../../shaders/common/grid.wgsl"),
);
const TREE: Wgsl = (
    "common/tree.wgsl",
    include_str!("../../../shaders/common/tree.wgsl"),
);
const TILE: Wgsl = (
    "common/tile.wgsl",
    include_str!("../../../shaders/common/tile.wgsl"),
);

impl Module {
    pub const ALL: [Module; 10] = [
        Module::Matmul,
        Module::Conv2d,
        Module::Conv2dRegisters,
        Module::Pool,
        Module::Softmax,
        Module::Elementwise,
        Module::Optim,
        Module::Reduce,
        Module::Mse,
        Module::Bench,
    ];

    /// The shader file itself (without the shared code).
    pub fn file(self) -> Wgsl {
        match self {
            Module::Matmul => ("matmul.wgsl", include_str!("../../../shaders/matmul.wgsl")),
            Module::Conv2d => ("conv2d.wgsl", include_str!("../../../shaders/conv2d.wgsl")),
            Module::Conv2dRegisters => (
                "conv2d_registers.wgsl",
                include_str!("../../../shaders/conv2d_registers.wgsl"),
            ),
            Module::Pool => ("pool.wgsl", include_str!("../../../shaders/pool.wgsl")),
            Module::Softmax => (
                "softmax.wgsl",
                include_str!("../../../shaders/softmax.wgsl"),
            ),
            Module::Elementwise => (
                "elementwise.wgsl",
                include_str!("../../../shaders/elementwise.wgsl"),
            ),
            Module::Optim => ("optim.wgsl", include_str!("../../../shaders/optim.wgsl")),
            Module::Reduce => ("reduce.wgsl", include_str!("../../../shaders/reduce.wgsl")),
            Module::Mse => ("mse.wgsl", include_str!("../../../shaders/mse.wgsl")),
            Module::Bench => ("bench.wgsl", include_str!("../../../shaders/bench.wgsl")),
        }
    }

    /// The module whose `Params` struct (params.rs) this one takes: its own, except
    /// conv2d_registers.wgsl, launched exactly as conv2d.wgsl is.
    pub fn params_module(self) -> Module {
        match self {
            Module::Conv2dRegisters => Module::Conv2d,
            m => m,
        }
    }

    /// The files of `shaders/common/` this shader calls into (its header lists them too).
    pub fn common(self) -> &'static [Wgsl] {
        match self {
            Module::Matmul => &[TILE],
            Module::Conv2d => &[TILE, GRID, TREE],
            Module::Reduce | Module::Mse => &[GRID, TREE],
            Module::Pool | Module::Softmax | Module::Elementwise | Module::Optim => &[GRID],
            Module::Conv2dRegisters | Module::Bench => &[],
        }
    }

    /// The text compiled for this module: the shader, then the shared code it uses; the
    /// tiled GEMM loop gets the module's tile shape from `tiles` written above it.
    pub fn source(self, tiles: Tiles) -> String {
        let mut out = String::from(self.file().1);
        for (name, text) in self.common() {
            out.push_str(&format!("\n// ---- shaders/{name} ----\n"));
            if *name == TILE.0 {
                let tile = if self == Module::Conv2d {
                    tiles.conv
                } else {
                    tiles.matmul
                };
                out.push_str(&tile.wgsl());
            }
            out.push_str(text);
        }
        out
    }

    /// The optional device features its kernels need (the union of their
    /// [`Kernel::needs`]).
    pub fn needs(self) -> wgpu::Features {
        ALL_KERNELS
            .iter()
            .filter(|k| k.module == self)
            .fold(wgpu::Features::empty(), |f, k| f | k.needs)
    }

    /// The text every tile shape of this module is built from (what the autotune cache's
    /// fingerprint covers).
    pub fn tiled_sources() -> [&'static str; 4] {
        [
            Module::Matmul.file().1,
            Module::Conv2d.file().1,
            Module::Conv2dRegisters.file().1,
            TILE.1,
        ]
    }
}

/// How a kernel binds a storage buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Access {
    Read,
    ReadWrite,
}
use Access::{Read as R, ReadWrite as W};

/// One kernel: an entry point of a module, its override constants and its storage bindings
/// (bindings 1..; binding 0 is always the parameter uniform, the `Params` struct of `module`,
/// see params.rs).
#[derive(Debug)]
pub(crate) struct Kernel {
    pub name: &'static str,
    pub module: Module,
    pub entry: &'static str,
    pub constants: &'static [(&'static str, f64)],
    pub bindings: &'static [Access],
    /// Optional device features the kernel uses (SHADER_F16, SUBGROUP, …); empty for all
    /// kernels today. A kernel that sets them is only dispatched where the device has them:
    /// the op that runs it checks [`Exec::supports`](super::exec::Exec::supports) and falls
    /// back to a kernel without them. Devices are opened with the union of these features
    /// (where the adapter offers them), see [`OPTIONAL_FEATURES`].
    pub needs: wgpu::Features,
}

macro_rules! kernel {
    ($id:ident, $name:literal, $module:ident, $entry:literal, [$($c:expr),*], [$($b:ident),*]) => {
        pub(crate) const $id: Kernel = Kernel {
            name: $name,
            module: Module::$module,
            entry: $entry,
            constants: &[$($c),*],
            bindings: &[$($b),*],
            needs: wgpu::Features::empty(),
        };
    };
}

pub(crate) mod k {
    use super::*;
    kernel!(
        MATMUL_NN,
        "matmul_nn",
        Matmul,
        "main",
        [("TRANS_A", 0.0), ("TRANS_B", 0.0)],
        [R, R, W, R, R, R]
    );
    kernel!(
        MATMUL_NT,
        "matmul_nt",
        Matmul,
        "main",
        [("TRANS_A", 0.0), ("TRANS_B", 1.0)],
        [R, R, W, R, R, R]
    );
    kernel!(
        MATMUL_TN,
        "matmul_tn",
        Matmul,
        "main",
        [("TRANS_A", 1.0), ("TRANS_B", 0.0)],
        [R, R, W, R, R, R]
    );
    kernel!(
        MATMUL_TT,
        "matmul_tt",
        Matmul,
        "main",
        [("TRANS_A", 1.0), ("TRANS_B", 1.0)],
        [R, R, W, R, R, R]
    );
    kernel!(
        MATMUL_NN_REGISTERS,
        "matmul_nn_registers",
        Matmul,
        "main_registers",
        [("TRANS_A", 0.0), ("TRANS_B", 0.0)],
        [R, R, W, R, R, R]
    );
    kernel!(
        MATMUL_NT_REGISTERS,
        "matmul_nt_registers",
        Matmul,
        "main_registers",
        [("TRANS_A", 0.0), ("TRANS_B", 1.0)],
        [R, R, W, R, R, R]
    );
    kernel!(
        MATMUL_TN_REGISTERS,
        "matmul_tn_registers",
        Matmul,
        "main_registers",
        [("TRANS_A", 1.0), ("TRANS_B", 0.0)],
        [R, R, W, R, R, R]
    );
    kernel!(
        MATMUL_TT_REGISTERS,
        "matmul_tt_registers",
        Matmul,
        "main_registers",
        [("TRANS_A", 1.0), ("TRANS_B", 1.0)],
        [R, R, W, R, R, R]
    );
    kernel!(
        CONV_FWD,
        "conv2d_forward",
        Conv2d,
        "main",
        [("MODE", 0.0)],
        [R, R, W, R]
    );
    kernel!(
        CONV_DGRAD,
        "conv2d_backward_input",
        Conv2d,
        "main",
        [("MODE", 1.0)],
        [R, R, W, R]
    );
    kernel!(
        CONV_WGRAD,
        "conv2d_backward_weight",
        Conv2d,
        "main",
        [("MODE", 2.0)],
        [R, R, W, R]
    );
    kernel!(
        CONV_FWD_REGISTERS,
        "conv2d_forward_registers",
        Conv2dRegisters,
        "forward",
        [],
        [R, R, W, R]
    );
    kernel!(
        CONV_DGRAD_REGISTERS,
        "conv2d_backward_input_registers",
        Conv2dRegisters,
        "input_grad",
        [],
        [R, R, W, R]
    );
    kernel!(
        CONV_WGRAD_REGISTERS,
        "conv2d_backward_weight_registers",
        Conv2dRegisters,
        "weight_grad",
        [],
        [R, R, W, R]
    );
    kernel!(
        CONV_BGRAD,
        "conv2d_backward_bias",
        Conv2d,
        "bias_grad",
        [],
        [R, R, W, R]
    );
    kernel!(
        POOL_FWD,
        "max_pool2d_forward",
        Pool,
        "forward",
        [],
        [R, W, W]
    );
    kernel!(
        POOL_BWD,
        "max_pool2d_backward",
        Pool,
        "backward",
        [],
        [R, W, W]
    );
    kernel!(RELU, "relu", Elementwise, "relu", [], [R, R, W]);
    kernel!(
        RELU_BWD,
        "relu_backward",
        Elementwise,
        "relu_backward",
        [],
        [R, R, W]
    );
    kernel!(ADD, "add", Elementwise, "add", [], [R, R, W]);
    kernel!(SCALE, "scale", Elementwise, "scale", [], [R, R, W]);
    kernel!(SCALE_BY, "scale_by", Elementwise, "scale_by", [], [R, R, W]);
    kernel!(AXPY, "axpy", Elementwise, "axpy", [], [R, R, W]);
    kernel!(FILL, "fill", Elementwise, "fill", [], [R, R, W]);
    kernel!(SUM_PARTIAL, "sum_partial", Reduce, "partial", [], [R, W]);
    kernel!(SUM_FINISH, "sum_finish", Reduce, "finish", [], [R, W]);
    kernel!(
        COLUMN_SUMS,
        "column_sums",
        Reduce,
        "column_sums",
        [],
        [R, W]
    );
    kernel!(
        SOFTMAX,
        "softmax",
        Softmax,
        "softmax",
        [],
        [R, R, R, W, W, W]
    );
    kernel!(
        LOG_SOFTMAX,
        "log_softmax",
        Softmax,
        "log_softmax",
        [],
        [R, R, R, W, W, W]
    );
    kernel!(
        SOFTMAX_BWD,
        "softmax_backward",
        Softmax,
        "softmax_backward",
        [],
        [R, R, R, W, W, W]
    );
    kernel!(
        LOG_SOFTMAX_BWD,
        "log_softmax_backward",
        Softmax,
        "log_softmax_backward",
        [],
        [R, R, R, W, W, W]
    );
    kernel!(
        CROSS_ENTROPY,
        "cross_entropy",
        Softmax,
        "cross_entropy",
        [],
        [R, R, R, W, W, W]
    );
    kernel!(
        KD_LOSS,
        "kd_loss",
        Softmax,
        "kd_loss",
        [],
        [R, R, R, W, W, W]
    );
    kernel!(
        COUNT_CORRECT,
        "count_correct",
        Softmax,
        "count_correct",
        [],
        [R, R, R, W, W, W]
    );
    kernel!(SGD, "sgd_step", Optim, "sgd", [], [R, W, W, W]);
    kernel!(ADAM, "adam_step", Optim, "adam", [], [R, W, W, W]);
    kernel!(MSE_LOSS, "mse_loss", Mse, "partial", [], [R, R, W, W]);
    kernel!(BENCH_FMA, "bench_fma_chain", Bench, "fma_chain", [], [R, W]);
    kernel!(BENCH_COPY, "bench_copy", Bench, "copy", [], [R, W]);
}

/// Every kernel of the table (for the feature union and the tests).
pub(crate) const ALL_KERNELS: [&Kernel; 39] = [
    &k::MATMUL_NN,
    &k::MATMUL_NT,
    &k::MATMUL_TN,
    &k::MATMUL_TT,
    &k::MATMUL_NN_REGISTERS,
    &k::MATMUL_NT_REGISTERS,
    &k::MATMUL_TN_REGISTERS,
    &k::MATMUL_TT_REGISTERS,
    &k::CONV_FWD,
    &k::CONV_DGRAD,
    &k::CONV_WGRAD,
    &k::CONV_FWD_REGISTERS,
    &k::CONV_DGRAD_REGISTERS,
    &k::CONV_WGRAD_REGISTERS,
    &k::CONV_BGRAD,
    &k::POOL_FWD,
    &k::POOL_BWD,
    &k::RELU,
    &k::RELU_BWD,
    &k::ADD,
    &k::SCALE,
    &k::SCALE_BY,
    &k::AXPY,
    &k::FILL,
    &k::SUM_PARTIAL,
    &k::SUM_FINISH,
    &k::COLUMN_SUMS,
    &k::SOFTMAX,
    &k::LOG_SOFTMAX,
    &k::SOFTMAX_BWD,
    &k::LOG_SOFTMAX_BWD,
    &k::CROSS_ENTROPY,
    &k::KD_LOSS,
    &k::COUNT_CORRECT,
    &k::SGD,
    &k::ADAM,
    &k::MSE_LOSS,
    &k::BENCH_FMA,
    &k::BENCH_COPY,
];

/// Optional features some kernel uses: requested from adapters that offer them, never
/// required (empty today).
pub(crate) const OPTIONAL_FEATURES: wgpu::Features = {
    let mut f = wgpu::Features::empty();
    let mut i = 0;
    while i < ALL_KERNELS.len() {
        f = f.union(ALL_KERNELS[i].needs);
        i += 1;
    }
    f
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_are_unique_and_every_module_has_kernels() {
        let mut names: Vec<_> = ALL_KERNELS.iter().map(|k| k.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL_KERNELS.len(), "duplicate kernel names");
        for m in Module::ALL {
            assert!(ALL_KERNELS.iter().any(|k| k.module == m), "{m:?}");
        }
    }

    #[test]
    fn no_kernel_needs_an_optional_feature_yet() {
        // When one does, it needs a fallback kernel; update this test with it.
        assert!(OPTIONAL_FEATURES.is_empty());
    }
}
