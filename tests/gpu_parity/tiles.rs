//! Every tile shape the autotune may pick, built into a device of its own, against the CPU:
//! the GEMM and conv2d cases of gemm.rs and conv_pool.rs once per candidate.

use distill::backend::gpu::{GpuBackend, Tile, TilePolicy, TileSource, Tiles};
use distill::backend::{Device, DeviceOptions};

use crate::conv_pool::conv2d_cases;
use crate::gemm::gemm_cases;
use crate::{gpu_or_skip, Both};

#[test]
fn every_autotune_candidate_matches_the_cpu() {
    if gpu_or_skip().is_none() {
        return;
    }
    for tile in Tile::CANDIDATES {
        let tiles = Tiles {
            matmul: tile,
            conv: tile,
        };
        let gpu = match GpuBackend::open_best_with(&TilePolicy::Fixed(tiles)) {
            Ok(g) => g,
            // A shape the device cannot hold is one the autotune never offers it.
            Err(e) if e.to_string().contains("workgroup memory") => continue,
            Err(e) => panic!("{tile}: {e}"),
        };
        assert_eq!(gpu.tiles().tiles, tiles);
        assert_eq!(gpu.tiles().source, TileSource::Fixed);
        let d = Both {
            cpu: Device::cpu(),
            gpu: gpu.device(),
        };
        gemm_cases(&d);
        conv2d_cases(&d);
    }
}

#[test]
fn two_devices_of_one_process_keep_their_own_tile_policy() {
    if gpu_or_skip().is_none() {
        return;
    }
    let open = |tiles| {
        Device::open(
            "gpu",
            &DeviceOptions {
                tiles,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let tiles_of = |d: &Device| d.backend().as_gpu().unwrap().tiles().clone();
    let defaults = open(TilePolicy::Defaults);
    let small = Tile::CANDIDATES
        .into_iter()
        .find(|&t| t != Tile::DEFAULT && GpuBackend::open_best_with(&fixed(t)).is_ok());
    let Some(small) = small else {
        return; // the device holds no shape but the default
    };
    let fixed_device = open(fixed(small));
    assert_eq!(tiles_of(&defaults).source, TileSource::Defaults);
    assert_eq!(tiles_of(&fixed_device).tiles.matmul, small);
    // Opening the second changed nothing of the first.
    assert_eq!(tiles_of(&defaults).tiles, Tiles::default());
}

fn fixed(tile: Tile) -> TilePolicy {
    TilePolicy::Fixed(Tiles {
        matmul: tile,
        conv: tile,
    })
}
