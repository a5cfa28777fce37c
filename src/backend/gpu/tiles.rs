//! The block shape of the tiled GEMM loop (`shaders/common/tile.wgsl`) that matmul.wgsl and
//! conv2d.wgsl share, and the candidate shapes the autotune times (autotune.rs).
//!
//! A workgroup is always 16×16 invocations; a [`Tile`] says how many output rows and columns
//! each invocation accumulates in registers (TM × TN), so a workgroup owns a 16·TM × 16·TN
//! block of the output. The shape is fixed when the module is compiled: [`Tile::wgsl`] writes
//! the two constants above the shared loop.
//!
//! [`Tile::REGISTERS`] is the other loop: no workgroup memory and no barriers, 4×4 per
//! invocation in named registers (matmul.wgsl `main_registers`, conv2d_registers.wgsl). It is
//! what an adapter that runs compute on a CPU wants (SwiftShader, lavapipe), where the staged
//! loop's barriers and indexed arrays cost more than its shared loads save.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Output rows (`tm`) and columns (`tn`) per invocation of the 16×16 workgroup, and which
/// loop computes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tile {
    pub tm: u32,
    pub tn: u32,
    /// The registers-only loop (no workgroup memory, no barriers; 4×4 only) instead of the
    /// staged one.
    #[serde(default)]
    pub registers: bool,
}

/// The K slice staged per step (BK in tile.wgsl).
const BK: u32 = 16;

impl Tile {
    /// The shape used without autotune: a 64×64 block, 4×4 per invocation.
    pub const DEFAULT: Tile = Tile::staged(4, 4);

    /// The registers-only loop: 64×64 blocks, 4×4 per invocation, nothing shared. The
    /// default where the adapter runs on a CPU and nothing was timed (a browser page).
    pub const REGISTERS: Tile = Tile {
        tm: 4,
        tn: 4,
        registers: true,
    };

    /// What the autotune may pick, the default first (it wins ties). All staged shapes keep
    /// the staging loop's quads whole (BM·BK and BN·BK are multiples of 4) and fit WebGPU's
    /// default 16 KiB of workgroup memory.
    pub const CANDIDATES: [Tile; 6] = [
        Tile::DEFAULT,
        Tile::staged(2, 2),
        Tile::staged(8, 4),
        Tile::staged(4, 8),
        Tile::staged(8, 8),
        Tile::REGISTERS,
    ];

    /// TM×TN per invocation through workgroup memory (`shaders/common/tile.wgsl`).
    pub const fn staged(tm: u32, tn: u32) -> Tile {
        Tile {
            tm,
            tn,
            registers: false,
        }
    }

    /// How a page or a test names it: `4x8`, or `registers`.
    pub fn name(self) -> String {
        if self.registers {
            "registers".into()
        } else {
            format!("{}x{}", self.tm, self.tn)
        }
    }

    /// Output rows per workgroup (BM).
    pub fn rows(self) -> usize {
        16 * self.tm as usize
    }

    /// Output columns per workgroup (BN).
    pub fn cols(self) -> usize {
        16 * self.tn as usize
    }

    /// Workgroup memory the loop uses: the A and B slices, f32 (none without staging).
    pub fn workgroup_bytes(self) -> u32 {
        if self.registers {
            return 0;
        }
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
    /// `64×128 (4×8 per invocation)`, or `64×64 (4×4 per invocation, registers only)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}×{} ({}×{} per invocation{})",
            self.rows(),
            self.cols(),
            self.tm,
            self.tn,
            if self.registers {
                ", registers only"
            } else {
                ""
            }
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
        assert!(!Tile::staged(8, 8).fits(&tiny));
        assert_eq!(Tile::candidates_for(&limits), Tile::CANDIDATES.to_vec());
        // 8 KiB holds the 64×64 default (8,192 bytes) and 32×32, not the 128-wide shapes;
        // the registers-only loop needs none.
        assert_eq!(
            Tile::candidates_for(&tiny),
            vec![Tile::DEFAULT, Tile::staged(2, 2), Tile::REGISTERS]
        );
    }

    #[test]
    fn display_names_the_block_and_the_per_invocation_shape() {
        assert_eq!(
            Tile::staged(4, 8).to_string(),
            "64×128 (4×8 per invocation)"
        );
        assert_eq!(
            Tile::REGISTERS.to_string(),
            "64×64 (4×4 per invocation, registers only)"
        );
        assert_eq!(Tile::staged(8, 4).name(), "8x4");
        assert_eq!(Tile::REGISTERS.name(), "registers");
        assert!(Tile::staged(2, 2).wgsl().contains("const TM: u32 = 2u;"));
        // A cache written before the registers loop existed reads as staged.
        let old: Tile = serde_json::from_str(r#"{"tm":8,"tn":4}"#).unwrap();
        assert_eq!(old, Tile::staged(8, 4));
    }
}
