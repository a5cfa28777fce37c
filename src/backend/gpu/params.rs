//! Kernel parameters: one Rust struct per WGSL `struct Params`, byte for byte.
//!
//! Every shader reads its scalars from `@binding(0) var<uniform> p: Params`. The structs here
//! are written into the per-submission uniform arena as raw bytes (`bytemuck`), so field
//! names, order, types and padding must match the WGSL declaration exactly. [`shader_params!`]
//! generates each struct together with the list of its fields, and the test at the bottom
//! parses every `shaders/*.wgsl` `struct Params { … }` and compares the two (names, order,
//! types, WGSL offsets and size). Where WGSL alignment leaves a gap (a vec4 after scalars),
//! both sides declare an explicit padding field.

use super::table::Module;

/// One field of a params struct, as the layout test needs it (only the test reads these).
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct ParamField {
    pub name: &'static str,
    /// The WGSL type (`u32`, `f32`, `vec4<f32>`, …).
    pub wgsl: &'static str,
    /// Byte offset in the Rust struct.
    pub offset: usize,
}

/// A Rust type that stands for a WGSL type inside a params struct.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) trait WgslType {
    const WGSL: &'static str;
}
impl WgslType for u32 {
    const WGSL: &'static str = "u32";
}
impl WgslType for i32 {
    const WGSL: &'static str = "i32";
}
impl WgslType for f32 {
    const WGSL: &'static str = "f32";
}
impl WgslType for [f32; 4] {
    const WGSL: &'static str = "vec4<f32>";
}
impl WgslType for [u32; 4] {
    const WGSL: &'static str = "vec4<u32>";
}

/// The parameters of the kernels of one WGSL module.
pub(crate) trait ShaderParams: bytemuck::Pod {
    const MODULE: Module;
    #[cfg_attr(not(test), allow(dead_code))]
    const FIELDS: &'static [ParamField];
}

/// Declares a params struct and its field list (see the module docs).
macro_rules! shader_params {
    ($(#[$doc:meta])* $name:ident for $module:ident {
        $($(#[$fdoc:meta])* $field:ident: $ty:ty,)*
    }) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        pub(crate) struct $name {
            $($(#[$fdoc])* pub $field: $ty,)*
        }
        impl ShaderParams for $name {
            const MODULE: Module = Module::$module;
            const FIELDS: &'static [ParamField] = &[$(ParamField {
                name: stringify!($field),
                wgsl: <$ty as WgslType>::WGSL,
                offset: std::mem::offset_of!($name, $field),
            }),*];
        }
    };
}

shader_params! {
    /// matmul.wgsl: `C[m×n] = op(A)·op(B)`, the epilogue switches and the vec4-load flags.
    MatmulParams for Matmul {
        m: u32,
        n: u32,
        k: u32,
        /// 0 = none, 1 = per row (length m), 2 = per column (length n).
        bias_mode: u32,
        accumulate: u32,
        relu: u32,
        /// The operand's stored rows are a multiple of 4 long: its tiles load as vec4.
        vec_a: u32,
        vec_b: u32,
    }
}

shader_params! {
    /// conv2d.wgsl: the convolution (NCHW) and the implicit GEMM it runs as (m, n, k).
    Conv2dParams for Conv2d {
        batch: u32,
        cin: u32,
        h: u32,
        w: u32,
        cout: u32,
        kh: u32,
        kw: u32,
        sh: u32,
        sw: u32,
        ph: u32,
        pw: u32,
        oh: u32,
        ow: u32,
        m: u32,
        n: u32,
        k: u32,
        has_bias: u32,
    }
}

shader_params! {
    /// pool.wgsl: max pooling over `planes` = batch·channels planes of h×w.
    PoolParams for Pool {
        planes: u32,
        h: u32,
        w: u32,
        kh: u32,
        kw: u32,
        sh: u32,
        sw: u32,
        oh: u32,
        ow: u32,
    }
}

shader_params! {
    /// softmax.wgsl: rows × cols, temperature `t`, the KD weight `alpha`.
    SoftmaxParams for Softmax {
        rows: u32,
        cols: u32,
        t: f32,
        alpha: f32,
        /// The losses also write their gradient.
        want_grad: u32,
    }
}

shader_params! {
    /// elementwise.wgsl: `len` elements and the scalar operand `s` (scale, alpha, fill value).
    ElementwiseParams for Elementwise {
        len: u32,
        s: f32,
    }
}

shader_params! {
    /// optim.wgsl: one struct for both optimisers; each leaves the other's fields at 0.
    OptimParams for Optim {
        len: u32,
        lr: f32,
        /// SGD only.
        momentum: f32,
        dampening: f32,
        weight_decay: f32,
        nesterov: u32,
        first_step: u32,
        /// Adam only.
        beta1: f32,
        beta2: f32,
        eps: f32,
        /// AdamW: weight decay applied to the weights, not the gradient.
        decoupled: u32,
        /// Bias corrections 1 − β1^t and sqrt(1 − β2^t), computed on the host in f64.
        bc1: f32,
        bc2_sqrt: f32,
    }
}

shader_params! {
    /// reduce.wgsl: `len` for sum, rows × cols for column_sums, the divisor of `finish`.
    ReduceParams for Reduce {
        len: u32,
        rows: u32,
        cols: u32,
        div: f32,
    }
}

shader_params! {
    /// mse.wgsl: `len` elements, the gradient factor `scale` = 2 / len, whether to write it.
    MseParams for Mse {
        len: u32,
        scale: f32,
        want_grad: u32,
    }
}

shader_params! {
    /// bench.wgsl: `len` vec4s to copy; the FMA chains' steps and operands.
    BenchParams for Bench {
        len: u32,
        iters: u32,
        x: f32,
        y: f32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (module, fields, size in bytes) of every params struct.
    fn all() -> Vec<(Module, &'static [ParamField], usize)> {
        fn of<P: ShaderParams>() -> (Module, &'static [ParamField], usize) {
            (P::MODULE, P::FIELDS, std::mem::size_of::<P>())
        }
        vec![
            of::<MatmulParams>(),
            of::<Conv2dParams>(),
            of::<PoolParams>(),
            of::<SoftmaxParams>(),
            of::<ElementwiseParams>(),
            of::<OptimParams>(),
            of::<ReduceParams>(),
            of::<MseParams>(),
            of::<BenchParams>(),
        ]
    }

    /// `(name, type)` of each member of the `struct Params { … }` in `src`.
    fn wgsl_params(src: &str) -> Vec<(String, String)> {
        let start = src
            .find("struct Params {")
            .expect("the shader declares struct Params");
        let body = &src[start + "struct Params {".len()..];
        let body = &body[..body.find('}').expect("struct Params is closed")];
        body.lines()
            .map(|l| l.split("//").next().unwrap_or("").trim())
            .flat_map(|l| l.split(','))
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(|m| {
                let (name, ty) = m.split_once(':').expect("member is `name: type`");
                (name.trim().to_string(), ty.trim().to_string())
            })
            .collect()
    }

    /// (size, alignment) of a WGSL type in a uniform buffer (the types params may use).
    fn wgsl_layout(ty: &str) -> (usize, usize) {
        match ty {
            "u32" | "i32" | "f32" => (4, 4),
            "vec2<u32>" | "vec2<i32>" | "vec2<f32>" => (8, 8),
            "vec4<u32>" | "vec4<i32>" | "vec4<f32>" => (16, 16),
            other => panic!("params use a WGSL type the layout test does not know: {other}"),
        }
    }

    fn round_up(x: usize, to: usize) -> usize {
        x.div_ceil(to) * to
    }

    /// Compares one Rust params struct with the WGSL declaration in `src`.
    fn check(module: Module, fields: &[ParamField], size: usize, src: &str) -> Result<(), String> {
        let file = module.file().0;
        let wgsl = wgsl_params(src);
        let rust: Vec<(String, String)> = fields
            .iter()
            .map(|f| (f.name.to_string(), f.wgsl.to_string()))
            .collect();
        if wgsl != rust {
            let show = |v: &[(String, String)]| {
                v.iter()
                    .map(|(n, t)| format!("{n}: {t}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(format!(
                "{file}: struct Params and its Rust struct differ (names, order and types must \
                 match)\n  WGSL: {}\n  Rust: {}",
                show(&wgsl),
                show(&rust)
            ));
        }
        let (mut offset, mut align) = (0, 4);
        for (f, (_, ty)) in fields.iter().zip(&wgsl) {
            let (sz, al) = wgsl_layout(ty);
            offset = round_up(offset, al);
            align = align.max(al);
            if f.offset != offset {
                return Err(format!(
                    "{file}: `{}` is at byte {} in WGSL, {} in Rust (add a padding field)",
                    f.name, offset, f.offset
                ));
            }
            offset += sz;
        }
        let wgsl_size = round_up(offset, align);
        if wgsl_size != size {
            return Err(format!(
                "{file}: struct Params is {wgsl_size} bytes in WGSL, {size} in Rust"
            ));
        }
        Ok(())
    }

    #[test]
    fn rust_params_match_every_wgsl_struct_params() {
        let all = all();
        for m in Module::ALL {
            let mine: Vec<_> = all
                .iter()
                .filter(|(pm, _, _)| *pm == m.params_module())
                .collect();
            assert_eq!(mine.len(), 1, "{m:?} needs exactly one params struct");
            let (_, fields, size) = mine[0];
            if let Err(e) = check(m, fields, *size, m.file().1) {
                panic!("{e}");
            }
            // The uniform binding is one 256-byte arena slot.
            assert!(*size <= 256, "{m:?} params exceed an arena slot");
        }
    }

    #[test]
    fn the_layout_check_catches_mismatches() {
        let f = MatmulParams::FIELDS;
        let size = std::mem::size_of::<MatmulParams>();
        let src = Module::Matmul.file().1;
        assert!(check(Module::Matmul, f, size, src).is_ok());
        // A renamed, a reordered, a retyped, a missing member.
        for (from, to) in [
            ("relu: u32,", "rel: u32,"),
            (
                "    relu: u32,\n    vec_a: u32,",
                "    vec_a: u32,\n    relu: u32,",
            ),
            ("relu: u32,", "relu: f32,"),
            ("relu: u32,", ""),
        ] {
            assert!(src.contains(from), "{from}");
            let bad = src.replacen(from, to, 1);
            assert!(check(Module::Matmul, f, size, &bad).is_err(), "{to}");
        }
        // A vec4 after scalars needs explicit padding on the Rust side.
        #[repr(C)]
        struct Unpadded {
            a: u32,
            v: [f32; 4],
        }
        let fields = [
            ParamField {
                name: "a",
                wgsl: "u32",
                offset: std::mem::offset_of!(Unpadded, a),
            },
            ParamField {
                name: "v",
                wgsl: "vec4<f32>",
                offset: std::mem::offset_of!(Unpadded, v),
            },
        ];
        let src = "struct Params {\n    a: u32,\n    v: vec4<f32>,\n}";
        let e = check(Module::Matmul, &fields, 20, src).unwrap_err();
        assert!(e.contains("padding"), "{e}");
    }
}
