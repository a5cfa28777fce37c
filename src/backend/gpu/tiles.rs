//! The block shape of the tiled GEMM loop (`shaders/common/tile.wgsl`) that matmul.wgsl and
//! conv2d.wgsl share, and the candidate shapes the autotune times (autotune.rs).
//!
//! A workgroup is always 16×16 invocations; a [`Tile`] says how many output rows and columns
//! each invocation accumulates in registers (TM × TN), so a workgroup owns a 16·TM × 16·TN
//! block of the output. The shape is fixed when the module is compiled: [`Tile::wgsl`] writes
//! the two constants above the shared loop.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Output rows (`tm`) and columns (`tn`) per invocation of the 16×16 workgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tile {
    pub tm: u32,
    pub tn: u32,
}

/// The K slice staged per step (BK in tile.wgsl).
const BK: u32 = 16;

impl Tile {
    /// The shape used without autotune: a 64×64 block, 4×4 per invocation.
    pub const DEFAULT: Tile = Tile { tm: 4, tn: 4 };

    /// What the autotune may pick, the default first (it wins ties). All keep the staging
    /// loop's quads whole (BM·BK and BN·BK are multiples of 4) and fit WebGPU's default
    /// 16 KiB of workgroup memory.
    pub const CANDIDATES: [Tile; 5] = [
        Tile::DEFAULT,
        Tile { tm: 2, tn: 2 },
        Tile { tm: 8, tn: 4 },
        Tile { tm: 4, tn: 8 },
        Tile { tm: 8, tn: 8 },
    ];

    /// Output rows per workgroup (BM).
    pub fn rows(self) -> usize {
        16 * self.tm as usize
    }

    /// Output columns per workgroup (BN).
    pub fn cols(self) -> usize {
        16 * self.tn as usize
    }

    /// Workgroup memory the loop declares: the A and B slices, f32.
    pub fn workgroup_bytes(self) -> u32 {
        (16 * self.tm + 16 * self.tn) * BK * 4
    }

    /// Whether a device with these limits can run the shape.
    pub fn fits(self, limits: &wgpu::Limits) -> bool {
        self.workgroup_bytes() <= limits.max_compute_workgroup_storage_size
    }

    /// The candidates a device with these limits can run, in [`Tile::CANDIDATES`] order.
    pub fn candidates_for(limits: &wgpu::Limits) -> Vec<Tile> {
        Tile::CANDIDATES
            .into_iter()
            .filter(|t| t.fits(limits))
            .collect()
    }

    /// The constants tile.wgsl reads, written above it when the module is built.
    pub fn wgsl(self) -> String {
        format!(
            "// The register block of this build (backend/gpu/tiles.rs):\n\
             const TM: u32 = {}u;\nconst TN: u32 = {}u;\n",
            self.tm, self.tn
        )
    }
}

impl Default for Tile {
    fn default() -> Self {
        Tile::DEFAULT
    }
}

impl fmt::Display for Tile {
    /// `64×128 (4×8 per invocation)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}×{} ({}×{} per invocation)",
            self.rows(),
            self.cols(),
            self.tm,
            self.tn
        )
    }
}

/// The tile shape of each module that uses the shared loop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tiles {
    /// matmul.wgsl: every GEMM (linear layers forward and backward).
    pub matmul: Tile,
    /// conv2d.wgsl: the implicit GEMMs of conv2d forward, input and weight gradients.
    pub conv: Tile,
}

impl fmt::Display for Tiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "matmul {}, conv {}", self.matmul, self.conv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_fit_the_webgpu_default_limits_and_start_with_the_default() {
        let limits = wgpu::Limits::default();
        assert_eq!(Tile::CANDIDATES[0], Tile::DEFAULT);
        for t in Tile::CANDIDATES {
            assert!(t.fits(&limits), "{t}");
            assert_eq!((t.rows() * BK as usize) % 4, 0);
        }
        let tiny = wgpu::Limits {
            max_compute_workgroup_storage_size: 8192,
            ..wgpu::Limits::default()
        };
        assert!(Tile::DEFAULT.fits(&tiny));
        assert!(!Tile { tm: 8, tn: 8 }.fits(&tiny));
        assert_eq!(Tile::candidates_for(&limits), Tile::CANDIDATES.to_vec());
        // 8 KiB holds the 64×64 default (8,192 bytes) and 32×32, not the 128-wide shapes.
        assert_eq!(
            Tile::candidates_for(&tiny),
            vec![Tile::DEFAULT, Tile { tm: 2, tn: 2 }]
        );
    }

    #[test]
    fn display_names_the_block_and_the_per_invocation_shape() {
        assert_eq!(
            Tile { tm: 4, tn: 8 }.to_string(),
            "64×128 (4×8 per invocation)"
        );
        assert!(Tile { tm: 2, tn: 2 }.wgsl().contains("const TM: u32 = 2u;"));
    }
}
