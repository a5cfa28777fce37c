//! Layers, the two presets (`teacher` and `student`, the networks this project was built
//! around), specs of the same layout, and PyTorch's default initialisation.
//!
//! A model is a [`Sequential`] of [`Layer`]s whose parameters carry the names the presets'
//! PyTorch modules give them (`conv1.weight`, `conv1.bias`, …, `fc2.bias`) and PyTorch's
//! layouts (`[out, in, kh, kw]`, `[out, in]`), so checkpoints load on either side.

mod flops;
pub use flops::Flops;

use serde::{Deserialize, Serialize};

use crate::ops::{self, Conv2dParams};
use crate::rng::Rng;
use crate::{Device, Error, Result, Tensor};

/// One layer of a [`Sequential`].
pub enum Layer {
    Conv2d {
        name: String,
        weight: Tensor,
        bias: Tensor,
        params: Conv2dParams,
    },
    Linear {
        name: String,
        weight: Tensor,
        bias: Tensor,
    },
    Relu,
    MaxPool2d {
        kernel: (usize, usize),
        stride: (usize, usize),
    },
    Flatten,
}

impl Layer {
    /// `Conv2d` with PyTorch's default init: weights Kaiming-uniform (a = √5), i.e.
    /// U(±1/√fan_in), and biases U(±1/√fan_in), fan_in = in·kh·kw.
    pub fn conv2d(
        name: &str,
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        params: Conv2dParams,
        device: &Device,
        rng: &mut Rng,
    ) -> Result<Layer> {
        let fan_in = in_ch * kernel * kernel;
        let weight = uniform_param(&[out_ch, in_ch, kernel, kernel], fan_in, device, rng)?;
        let bias = uniform_param(&[out_ch], fan_in, device, rng)?;
        Ok(Layer::Conv2d {
            name: name.into(),
            weight,
            bias,
            params,
        })
    }

    /// `Linear` with PyTorch's default init (as for `conv2d`, fan_in = in).
    pub fn linear(
        name: &str,
        fan_in: usize,
        fan_out: usize,
        device: &Device,
        rng: &mut Rng,
    ) -> Result<Layer> {
        let weight = uniform_param(&[fan_out, fan_in], fan_in, device, rng)?;
        let bias = uniform_param(&[fan_out], fan_in, device, rng)?;
        Ok(Layer::Linear {
            name: name.into(),
            weight,
            bias,
        })
    }
}

impl Layer {
    /// The layer as an error message names it: `conv2d conv1`, `relu`, `max_pool2d 2x2`.
    pub fn describe(&self) -> String {
        match self {
            Layer::Conv2d { name, .. } => format!("conv2d {name}"),
            Layer::Linear { name, .. } => format!("linear {name}"),
            Layer::Relu => "relu".into(),
            Layer::MaxPool2d { kernel, .. } => format!("max_pool2d {}x{}", kernel.0, kernel.1),
            Layer::Flatten => "flatten".into(),
        }
    }
}

/// A device error (a limit, out of memory) of layer `index`'s forward, naming the layer.
/// Other errors pass through unchanged.
fn in_layer(e: Error, index: usize, layer: &Layer) -> Error {
    let what = format!("forward of layer {index} ({})", layer.describe());
    match e {
        Error::Device(msg) => Error::Device(format!("{what}: {msg}")),
        Error::OutOfMemory { device, detail } => Error::OutOfMemory {
            device,
            detail: format!("{what}: {detail}"),
        },
        other => other,
    }
}

fn uniform_param(shape: &[usize], fan_in: usize, device: &Device, rng: &mut Rng) -> Result<Tensor> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.uniform(-bound, bound)).collect();
    Ok(Tensor::from_f32(&data, shape, device)?.into_param())
}

/// Whether `a` then `b` is a ReLU then a max-pool, which [`Sequential::forward`] runs as the
/// pool then the ReLU: the same values (max is monotonic, so the max of the rectified window
/// is the rectified max) and the same gradients (the pool sends its gradient to the window's
/// first maximum either way, and the ReLU passes it only where that maximum is > 0), on a
/// quarter of the elements for a 2×2 pool.
fn relu_then_pool(a: &Layer, b: &Layer) -> bool {
    matches!((a, b), (Layer::Relu, Layer::MaxPool2d { .. }))
}

/// Whether `layers` begins with a conv, a ReLU and a 2×2/stride-2 max-pool, which
/// [`Sequential::forward`] runs as one op ([`ops::conv2d_max_pool2`] with its ReLU, where the
/// backend can keep the conv's full-size output out of memory; the ReLU on the pooled output,
/// as [`relu_then_pool`] explains).
fn conv_relu_pool2(layers: &[Layer]) -> bool {
    matches!(
        layers,
        [
            Layer::Conv2d { .. },
            Layer::Relu,
            Layer::MaxPool2d {
                kernel: (2, 2),
                stride: (2, 2)
            },
            ..
        ]
    )
}

/// Whether the conv `layer` on `h` makes an output of at least 2×2, which the fused conv +
/// pool needs; otherwise the layers run one by one, so that an error names the layer it
/// belongs to.
fn pools_after_conv(h: &Tensor, layer: &Layer) -> bool {
    let Layer::Conv2d { weight, params, .. } = layer else {
        return false;
    };
    let (hs, ws) = (h.shape(), weight.shape());
    if hs.len() != 4 || ws.len() != 4 {
        return false;
    }
    let s = params.shape(hs, ws);
    s.validate().is_ok() && s.out_h() >= 2 && s.out_w() >= 2
}

/// Layers applied in order.
pub struct Sequential {
    pub layers: Vec<Layer>,
}

impl Sequential {
    /// Runs the layers; a `Linear` followed by `Relu` runs as one GEMM with a fused epilogue,
    /// a `Relu` followed by a max-pool runs after the pool (`relu_then_pool`), and a conv
    /// before them runs with both as one op (`conv_relu_pool2`).
    /// A device error (a limit, out of memory) names the layer it happened in.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run_layers(x, self.layers.len())
    }

    /// The forward pass that also returns the activation at a feature layer `tap` (see
    /// [`Sequential::tap_names`]): `(logits, feature)`. The feature is part of the same graph,
    /// so a loss on it back-propagates into the layers before it.
    pub fn forward_with_tap(&self, x: &Tensor, tap: &str) -> Result<(Tensor, Tensor)> {
        let end = self.tap_end(tap)?;
        let feature = self.run_layers(x, end)?;
        let logits = self.run_layers_from(feature.clone(), end, self.layers.len())?;
        Ok((logits, feature))
    }

    /// Only the layers up to the feature layer `tap`, and its activation (a teacher's hint:
    /// nothing after it runs).
    pub fn features(&self, x: &Tensor, tap: &str) -> Result<Tensor> {
        self.run_layers(x, self.tap_end(tap)?)
    }

    /// The feature layers a tap may name, in order: each conv layer by its name (`conv1`,
    /// `conv2`: its output after the ReLU that follows it, before any pool) and each max-pool
    /// by its position (`pool1`, `pool2`: the pooled output).
    pub fn tap_names(&self) -> Vec<String> {
        self.taps().into_iter().map(|(name, _)| name).collect()
    }

    /// `(name, end)` of every tap: the activation after layers `0..end`.
    fn taps(&self) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        let mut pools = 0;
        for (i, layer) in self.layers.iter().enumerate() {
            match layer {
                Layer::Conv2d { name, .. } => {
                    let relu = matches!(self.layers.get(i + 1), Some(Layer::Relu));
                    out.push((name.clone(), i + 1 + relu as usize));
                }
                Layer::MaxPool2d { .. } => {
                    pools += 1;
                    out.push((format!("pool{pools}"), i + 1));
                }
                _ => {}
            }
        }
        out
    }

    /// How many layers run before the tap `name`, or an error listing the names there are.
    fn tap_end(&self, name: &str) -> Result<usize> {
        let taps = self.taps();
        match taps.iter().find(|(n, _)| n == name) {
            Some(&(_, end)) => Ok(end),
            None => Err(Error::InvalidArgument(format!(
                "no feature layer '{name}' in this network (it has: {})",
                self.tap_names().join(", ")
            ))),
        }
    }

    /// Layers `0..end` on `x`.
    fn run_layers(&self, x: &Tensor, end: usize) -> Result<Tensor> {
        self.run_layers_from(x.clone(), 0, end)
    }

    /// Layers `start..end` on `h`. A `Linear` whose `Relu` is inside the range is fused with it,
    /// a `Relu` followed by a `MaxPool2d` in the range runs after it ([`relu_then_pool`]), and
    /// a conv, ReLU and 2×2 pool all in the range run as one op ([`conv_relu_pool2`]).
    fn run_layers_from(&self, mut h: Tensor, start: usize, end: usize) -> Result<Tensor> {
        let mut i = start;
        while i < end {
            if i + 2 < end
                && conv_relu_pool2(&self.layers[i..])
                && pools_after_conv(&h, &self.layers[i])
            {
                h = self
                    .conv_relu_pool_forward(i, &h)
                    .map_err(|e| in_layer(e, i, &self.layers[i]))?;
                i += 3;
                continue;
            }
            if i + 1 < end && relu_then_pool(&self.layers[i], &self.layers[i + 1]) {
                h = self
                    .layer_forward(i + 1, &h, false)
                    .map_err(|e| in_layer(e, i + 1, &self.layers[i + 1]))?;
                h = self
                    .layer_forward(i, &h, false)
                    .map_err(|e| in_layer(e, i, &self.layers[i]))?;
                i += 2;
                continue;
            }
            let fuse_relu = i + 1 < end && matches!(self.layers.get(i + 1), Some(Layer::Relu));
            h = self
                .layer_forward(i, &h, fuse_relu)
                .map_err(|e| in_layer(e, i, &self.layers[i]))?;
            if fuse_relu && matches!(self.layers[i], Layer::Linear { .. }) {
                i += 1;
            }
            i += 1;
        }
        Ok(h)
    }

    /// Layers `0..end` one by one, in the order they are listed: no fusion, no reordering
    /// (what [`Sequential::forward`] must agree with; for tests).
    #[doc(hidden)]
    pub fn forward_unfused(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for i in 0..self.layers.len() {
            h = self.layer_forward(i, &h, false)?;
        }
        Ok(h)
    }

    /// The conv layer `i`, the ReLU and the 2×2 pool after it as one op.
    fn conv_relu_pool_forward(&self, i: usize, h: &Tensor) -> Result<Tensor> {
        match &self.layers[i] {
            Layer::Conv2d {
                weight,
                bias,
                params,
                ..
            } => ops::conv2d_max_pool2(h, weight, Some(bias), *params, true),
            _ => unreachable!("conv_relu_pool_forward: layer {i} is not a conv"),
        }
    }

    fn layer_forward(&self, i: usize, h: &Tensor, fuse_relu: bool) -> Result<Tensor> {
        match &self.layers[i] {
            Layer::Conv2d {
                weight,
                bias,
                params,
                ..
            } => ops::conv2d(h, weight, Some(bias), *params),
            Layer::Linear { weight, bias, .. } => ops::linear(h, weight, Some(bias), fuse_relu),
            Layer::Relu => ops::relu(h),
            Layer::MaxPool2d { kernel, stride } => ops::max_pool2d(h, *kernel, *stride),
            Layer::Flatten => ops::flatten(h),
        }
    }

    /// `(name, tensor)` for every parameter, in layer order (`conv1.weight`, `conv1.bias`, …).
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for layer in &self.layers {
            match layer {
                Layer::Conv2d {
                    name, weight, bias, ..
                }
                | Layer::Linear { name, weight, bias } => {
                    out.push((format!("{name}.weight"), weight.clone()));
                    out.push((format!("{name}.bias"), bias.clone()));
                }
                _ => {}
            }
        }
        out
    }
}

/// An architecture of the presets' layout, sized for a dataset: for each conv width c,
/// `conv(c, 3×3, pad 1) relu maxpool2`, then `linear(hidden) relu, linear(classes)`.
/// Presets: teacher = `c64-c128-f1000`, student = `c32-c64-f500`; any other is written in that
/// compact form ([`ArchSpec::parse`]). Parameters are named `conv1…convK`, `fc1`, `fc2`, as
/// the PyTorch modules of that layout name them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchSpec {
    /// `teacher`, `student`, or the compact spec (`c16-c32-f128`).
    pub arch: String,
    pub in_channels: usize,
    pub height: usize,
    pub width: usize,
    pub num_classes: usize,
    /// Output channels of conv1, conv2, … (a checkpoint's `[c1, c2]` of the two-conv preset
    /// layout reads as the same list).
    pub conv_channels: Vec<usize>,
    pub hidden: usize,
}

/// The largest width a compact spec may ask for (keeps a typo from allocating gigabytes).
pub const MAX_WIDTH: usize = 1 << 16;

impl ArchSpec {
    /// `teacher` or `student` for inputs of `in_channels × height × width` and `num_classes`.
    pub fn preset(
        arch: &str,
        in_channels: usize,
        height: usize,
        width: usize,
        num_classes: usize,
    ) -> Result<ArchSpec> {
        let (conv_channels, hidden) = match arch {
            "teacher" => (vec![64, 128], 1000),
            "student" => (vec![32, 64], 500),
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown architecture '{other}': expected teacher or student"
                )))
            }
        };
        let spec = ArchSpec {
            arch: arch.into(),
            in_channels,
            height,
            width,
            num_classes,
            conv_channels,
            hidden,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// A preset by name (`teacher`, `student`) or a compact spec ([`ArchSpec::parse`]).
    pub fn named(
        arch: &str,
        in_channels: usize,
        height: usize,
        width: usize,
        num_classes: usize,
    ) -> Result<ArchSpec> {
        match arch {
            "teacher" | "student" => {
                ArchSpec::preset(arch, in_channels, height, width, num_classes)
            }
            spec => ArchSpec::parse(spec, in_channels, height, width, num_classes),
        }
    }

    /// A compact spec: conv widths `cN` (one or more), then one hidden width `fN`, joined by
    /// `-`, e.g. `c16-c32-f128`. Every N is a whole number in 1..=[`MAX_WIDTH`].
    pub fn parse(
        spec: &str,
        in_channels: usize,
        height: usize,
        width: usize,
        num_classes: usize,
    ) -> Result<ArchSpec> {
        let (conv_channels, hidden) = parse_layers(spec)?;
        let spec = ArchSpec {
            arch: spec.into(),
            in_channels,
            height,
            width,
            num_classes,
            conv_channels,
            hidden,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Whether `arch` names a preset or is a well-formed compact spec (sizes aside).
    pub fn check_name(arch: &str) -> Result<()> {
        match arch {
            "teacher" | "student" => Ok(()),
            spec => parse_layers(spec).map(|_| ()),
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.in_channels == 0
            || self.num_classes == 0
            || self.hidden == 0
            || self.conv_channels.is_empty()
            || self.conv_channels.contains(&0)
        {
            return Err(Error::Shape(format!(
                "architecture {self:?}: every size must be > 0"
            )));
        }
        let pools = self.conv_channels.len() as u32;
        let need = 1usize.checked_shl(pools).unwrap_or(usize::MAX);
        if pools >= usize::BITS || self.height < need || self.width < need {
            return Err(Error::Shape(format!(
                "architecture '{}': input {}x{} is too small for {pools} 2x2 max-pools (need at least {need}x{need})",
                self.arch, self.height, self.width
            )));
        }
        Ok(())
    }

    /// Features entering `fc1`: c_last · ⌊H/2^K⌋ · ⌊W/2^K⌋ for K convs (NCHW flatten order).
    pub fn fc1_inputs(&self) -> usize {
        let k = self.conv_channels.len() as u32;
        self.conv_channels.last().copied().unwrap_or(0) * (self.height >> k) * (self.width >> k)
    }

    /// `(name, shape)` of every parameter, in order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut shapes = Vec::new();
        let mut c_in = self.in_channels;
        for (i, &c) in self.conv_channels.iter().enumerate() {
            shapes.push((format!("conv{}.weight", i + 1), vec![c, c_in, 3, 3]));
            shapes.push((format!("conv{}.bias", i + 1), vec![c]));
            c_in = c;
        }
        shapes.extend([
            ("fc1.weight".into(), vec![self.hidden, self.fc1_inputs()]),
            ("fc1.bias".into(), vec![self.hidden]),
            ("fc2.weight".into(), vec![self.num_classes, self.hidden]),
            ("fc2.bias".into(), vec![self.num_classes]),
        ]);
        shapes
    }

    pub fn num_parameters(&self) -> usize {
        self.parameter_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// Builds the network with PyTorch's default initialisation from `seed`.
    pub fn build(&self, device: &Device, seed: u64) -> Result<Sequential> {
        self.validate()?;
        let mut rng = Rng::derive(seed, "init", 0);
        let same = Conv2dParams {
            stride: (1, 1),
            padding: (1, 1),
        };
        let mut layers = Vec::new();
        let mut c_in = self.in_channels;
        for (i, &c) in self.conv_channels.iter().enumerate() {
            let name = format!("conv{}", i + 1);
            layers.push(Layer::conv2d(&name, c_in, c, 3, same, device, &mut rng)?);
            layers.push(Layer::Relu);
            layers.push(Layer::MaxPool2d {
                kernel: (2, 2),
                stride: (2, 2),
            });
            c_in = c;
        }
        layers.push(Layer::Flatten);
        layers.push(Layer::linear(
            "fc1",
            self.fc1_inputs(),
            self.hidden,
            device,
            &mut rng,
        )?);
        layers.push(Layer::Relu);
        layers.push(Layer::linear(
            "fc2",
            self.hidden,
            self.num_classes,
            device,
            &mut rng,
        )?);
        Ok(Sequential { layers })
    }
}

/// The conv widths and the hidden width of a compact spec (`c16-c32-f128`).
fn parse_layers(spec: &str) -> Result<(Vec<usize>, usize)> {
    let bad = |why: String| {
        Error::InvalidArgument(format!(
            "unknown architecture '{spec}': {why} (expected teacher, student, or conv widths then one \
             hidden width, e.g. c16-c32-f128)"
        ))
    };
    let mut conv_channels = Vec::new();
    let mut hidden = None;
    for part in spec.split('-') {
        let (kind, digits) = part.split_at(part.chars().next().map_or(0, char::len_utf8));
        let n: usize = digits
            .parse()
            .ok()
            .filter(|n| (1..=MAX_WIDTH).contains(n))
            .ok_or_else(|| {
                bad(format!(
                    "'{part}' is not c or f with a width in 1..={MAX_WIDTH}"
                ))
            })?;
        match (kind, hidden) {
            ("c", None) => conv_channels.push(n),
            ("f", None) => hidden = Some(n),
            ("c" | "f", Some(_)) => return Err(bad(format!("'{part}' follows the hidden width"))),
            _ => return Err(bad(format!("'{part}' is neither cN nor fN"))),
        }
    }
    if conv_channels.is_empty() {
        return Err(bad("no conv width (cN)".into()));
    }
    let hidden = hidden.ok_or_else(|| bad("no hidden width (fN) at the end".into()))?;
    Ok((conv_channels, hidden))
}
