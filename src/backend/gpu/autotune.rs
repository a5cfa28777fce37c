//! Autotune: each adapter's GEMM tile shapes ([`Tiles`]) chosen by timing the candidates once,
//! and kept on disk so that later starts read the choice instead of timing again.
//!
//! - What: for matmul.wgsl and for conv2d.wgsl separately, the [`Tile`] of
//!   [`Tile::CANDIDATES`] (those that fit the device) with the least time on the teacher and student presets'
//!   layers (tune_workload.rs). Ties go to the earlier candidate, so the default wins them.
//! - Where: `autotune/<adapter>.json` under the cache directory ([`cache_dir`]). One file per
//!   adapter (name, backend, vendor and device ids); it records the driver and a fingerprint
//!   of the shaders and candidates, and the adapter is timed again when either has changed.
//! - When not: [`TilePolicy::Defaults`] (the CLI's `--no-autotune`, or `DISTILL_AUTOTUNE=0`)
//!   builds the device with [`Tile::DEFAULT`] and neither reads nor writes the cache. The
//!   policy is an option of each device as it opens ([`crate::backend::DeviceOptions`]), so
//!   two devices of one process may differ.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::table::Module;
use super::tiles::{Tile, Tiles};
use crate::fs::write_atomic;
use crate::Result;

/// How a GPU device gets its tile shapes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TilePolicy {
    /// Read the adapter's choice from the cache directory ([`cache_dir`]), or time the
    /// candidates and save it there (in memory only when there is no cache directory).
    Autotune,
    /// As `Autotune`, with the cache in this directory.
    AutotuneIn(PathBuf),
    /// [`Tile::DEFAULT`] for every module; no timing, no cache.
    Defaults,
    /// These shapes (tests and studies of one shape); no timing, no cache.
    Fixed(Tiles),
}

impl TilePolicy {
    /// `Defaults` when `switch` (the value of an autotune switch such as the CLI's
    /// `DISTILL_AUTOTUNE`) is `0`, `off` or `false`, else `Autotune`.
    pub fn unless_off(switch: Option<&str>) -> TilePolicy {
        match switch {
            Some("0") | Some("off") | Some("false") => TilePolicy::Defaults,
            _ => TilePolicy::Autotune,
        }
    }
}

impl Default for TilePolicy {
    /// Autotune, with the cache in [`cache_dir`].
    fn default() -> TilePolicy {
        TilePolicy::Autotune
    }
}

/// Where per-machine caches live: `$DISTILL_CACHE_DIR`, else the user's cache directory
/// (`$XDG_CACHE_HOME` or `~/.cache` on Linux, `~/Library/Caches` on macOS, `%LOCALAPPDATA%`
/// on Windows) + `/distill`. `None` when none of these is set.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("DISTILL_CACHE_DIR") {
        return Some(dir);
    }
    let base = if cfg!(target_os = "windows") {
        var("LOCALAPPDATA")
    } else if cfg!(target_os = "macos") {
        var("HOME").map(|h| h.join("Library").join("Caches"))
    } else {
        var("XDG_CACHE_HOME").or_else(|| var("HOME").map(|h| h.join(".cache")))
    };
    base.map(|b| b.join("distill"))
}

/// The adapter and driver a choice was timed on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterKey {
    pub name: String,
    pub backend: String,
    pub vendor: u32,
    pub device: u32,
    pub driver: String,
    pub driver_info: String,
}

impl AdapterKey {
    pub fn of(info: &wgpu::AdapterInfo) -> AdapterKey {
        AdapterKey {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            vendor: info.vendor,
            device: info.device,
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
        }
    }

    /// The cache file's name: the adapter, not the driver (a new driver rewrites the file).
    pub fn file_name(&self) -> String {
        let slug: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let slug = slug.trim_matches('-');
        format!(
            "{}-{}-{:04x}-{:04x}.json",
            if slug.is_empty() { "adapter" } else { slug },
            self.backend.to_ascii_lowercase(),
            self.vendor,
            self.device
        )
    }
}

/// Which family of kernels a candidate is timed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Matmul,
    Conv,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Matmul, Family::Conv];

    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn modules(self) -> &'static [Module] {
        match self {
            Family::Matmul => &[Module::Matmul],
            Family::Conv => &[Module::Conv2d, Module::Conv2dRegisters],
        }
    }
}

/// The size of the layers a candidate is timed on (tune_workload.rs): `batch` images, every
/// width (features, channels) divided by `width_divisor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub batch: usize,
    pub width_divisor: usize,
}

/// One candidate's measurement: milliseconds per pass over `workload`, or why it failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub family: Family,
    pub tile: Tile,
    pub workload: Option<Workload>,
    pub ms: Option<f64>,
    pub error: Option<String>,
}

/// Where a device's tiles came from.
#[derive(Clone, Debug, PartialEq)]
pub enum TileSource {
    /// `TilePolicy::Defaults`.
    Defaults,
    /// `TilePolicy::Fixed`.
    Fixed,
    /// Read from this cache file.
    Cached(PathBuf),
    /// Timed now; saved to the file, or not (and why).
    Tuned(std::result::Result<PathBuf, String>),
    /// Chosen by the kind of adapter without timing (a page, which can neither block to
    /// time candidates nor keep a cache): the registers-only loop on an adapter that runs
    /// on a CPU, the default tile elsewhere.
    AdapterKind,
}

/// A device's tile shapes and where they came from.
#[derive(Clone, Debug, PartialEq)]
pub struct TileChoice {
    pub tiles: Tiles,
    pub source: TileSource,
    /// The timings behind the choice (empty unless it was timed or read from the cache).
    pub timings: Vec<Timing>,
}

impl TileChoice {
    pub fn defaults() -> TileChoice {
        TileChoice {
            tiles: Tiles::default(),
            source: TileSource::Defaults,
            timings: Vec::new(),
        }
    }

    /// Without timing: [`Tile::REGISTERS`] where the adapter runs on a CPU (its barriers and
    /// indexed arrays are software there, see tiles.rs), [`Tile::DEFAULT`] elsewhere.
    pub fn by_adapter_kind(device_type: wgpu::DeviceType) -> TileChoice {
        let tile = if device_type == wgpu::DeviceType::Cpu {
            Tile::REGISTERS
        } else {
            Tile::DEFAULT
        };
        TileChoice {
            tiles: Tiles {
                matmul: tile,
                conv: tile,
            },
            source: TileSource::AdapterKind,
            timings: Vec::new(),
        }
    }
}

impl fmt::Display for TileChoice {
    /// `matmul 64×64 (…), conv 128×64 (…); autotuned, cached in PATH`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; ", self.tiles)?;
        match &self.source {
            TileSource::Defaults => write!(f, "defaults (autotune off)"),
            TileSource::Fixed => write!(f, "fixed by the caller"),
            TileSource::Cached(p) => write!(f, "autotuned, cached in {}", p.display()),
            TileSource::Tuned(Ok(p)) => write!(f, "autotuned now, saved to {}", p.display()),
            TileSource::Tuned(Err(why)) => write!(f, "autotuned now, not saved: {why}"),
            TileSource::AdapterKind => write!(f, "chosen by the kind of adapter (not timed)"),
        }
    }
}

/// The cache file's contents.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    adapter: AdapterKey,
    fingerprint: String,
    tuned_at: String,
    tiles: Tiles,
    timings: Vec<Timing>,
}

const FORMAT: u32 = 1;

/// What a cached choice depends on besides the adapter: the tiled shaders' text, the
/// candidates and the engine's version. FNV-1a, stable across Rust releases.
pub fn fingerprint() -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(env!("CARGO_PKG_VERSION").as_bytes());
    for src in Module::tiled_sources() {
        eat(src.as_bytes());
    }
    eat(format!("{:?}", Tile::CANDIDATES).as_bytes());
    format!("{h:016x}")
}

/// The cache file of `key` under `dir`.
pub fn cache_file(dir: &Path, key: &AdapterKey) -> PathBuf {
    dir.join("autotune").join(key.file_name())
}

/// The choice cached for `key` under `dir`, if the file exists, parses, and was made on the
/// same adapter and driver with the same shaders (`fingerprint`) among `candidates`.
pub fn read_cached(
    dir: &Path,
    key: &AdapterKey,
    fingerprint: &str,
    candidates: &[Tile],
) -> Option<TileChoice> {
    let path = cache_file(dir, key);
    let text = std::fs::read_to_string(&path).ok()?;
    let file: CacheFile = serde_json::from_str(&text).ok()?;
    let valid = file.format == FORMAT
        && file.adapter == *key
        && file.fingerprint == fingerprint
        && candidates.contains(&file.tiles.matmul)
        && candidates.contains(&file.tiles.conv);
    valid.then_some(TileChoice {
        tiles: file.tiles,
        source: TileSource::Cached(path),
        timings: file.timings,
    })
}

/// What `distill devices` says of an adapter's tiles: the cached choice, or what will happen
/// when it is first used (without timing anything).
pub fn describe(adapter: &wgpu::Adapter, policy: &TilePolicy) -> String {
    let dir = match policy.clone() {
        TilePolicy::Defaults => return format!("{} (autotune off)", Tiles::default()),
        TilePolicy::Fixed(t) => return format!("{t} (fixed)"),
        TilePolicy::Autotune => cache_dir(),
        TilePolicy::AutotuneIn(d) => Some(d),
    };
    let Some(dir) = dir else {
        return "timed at each start (no cache directory: set DISTILL_CACHE_DIR or HOME)".into();
    };
    let key = AdapterKey::of(&adapter.get_info());
    let limits = adapter.limits();
    let candidates = Tile::candidates_for(&limits);
    match read_cached(&dir, &key, &fingerprint(), &candidates) {
        Some(c) => format!(
            "{} (autotuned; {})",
            c.tiles,
            cache_file(&dir, &key).display()
        ),
        None => format!(
            "not tuned yet: timed on first use, then cached in {}",
            cache_file(&dir, &key).display()
        ),
    }
}

/// One process times one adapter at a time, so threads opening the same adapter together
/// time it once and the others read the file.
static TUNING: Mutex<()> = Mutex::new(());

/// The tiles for `key`: read from the cache under `dir`, else timed with `time` (once per
/// family and candidate: milliseconds per pass and the workload of the pass; an error drops
/// the candidate) and saved there.
pub fn choose(
    key: &AdapterKey,
    dir: Option<&Path>,
    candidates: &[Tile],
    time: &mut dyn FnMut(Family, Tile) -> Result<(f64, Workload)>,
) -> TileChoice {
    let _one_at_a_time = TUNING.lock().unwrap_or_else(|e| e.into_inner());
    let fp = fingerprint();
    if let Some(cached) = dir.and_then(|d| read_cached(d, key, &fp, candidates)) {
        return cached;
    }
    let mut tiles = Tiles::default();
    let mut timings = Vec::new();
    for family in Family::ALL {
        let mut best: Option<(f64, Tile)> = None;
        for &tile in candidates {
            let t = time(family, tile);
            if let Ok((ms, _)) = t {
                if best.is_none_or(|(b, _)| ms < b) {
                    best = Some((ms, tile));
                }
            }
            timings.push(Timing {
                family,
                tile,
                workload: t.as_ref().ok().map(|&(_, w)| w),
                ms: t.as_ref().ok().map(|&(ms, _)| ms),
                error: t.err().map(|e| e.to_string()),
            });
        }
        let chosen = best.map_or(Tile::DEFAULT, |(_, t)| t);
        match family {
            Family::Matmul => tiles.matmul = chosen,
            Family::Conv => tiles.conv = chosen,
        }
    }
    let saved = match dir {
        None => Err("no cache directory (set DISTILL_CACHE_DIR or HOME)".to_string()),
        Some(d) => save(d, key, &fp, tiles, &timings).map_err(|e| e.to_string()),
    };
    TileChoice {
        tiles,
        source: TileSource::Tuned(saved),
        timings,
    }
}

fn save(
    dir: &Path,
    key: &AdapterKey,
    fingerprint: &str,
    tiles: Tiles,
    timings: &[Timing],
) -> Result<PathBuf> {
    let path = cache_file(dir, key);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| crate::Error::io(parent, e))?;
    }
    let file = CacheFile {
        format: FORMAT,
        adapter: key.clone(),
        fingerprint: fingerprint.to_string(),
        tuned_at: crate::calendar::utc_now().1,
        tiles,
        timings: timings.to_vec(),
    };
    let json = serde_json::to_string_pretty(&file)
        .map_err(|e| crate::Error::Other(format!("cannot write the autotune cache: {e}")))?;
    write_atomic(&path, json.as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(driver: &str) -> AdapterKey {
        AdapterKey {
            name: "Test GPU 9000 (rev 2)".into(),
            backend: "Vulkan".into(),
            vendor: 0x10de,
            device: 0x2335,
            driver: driver.into(),
            driver_info: "1.2.3".into(),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("distill-autotune-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// A fake device on which `fast` is the quickest shape for both families.
    const FULL: Workload = Workload {
        batch: 128,
        width_divisor: 1,
    };

    fn timer(
        fast: Tile,
        calls: &mut usize,
    ) -> impl FnMut(Family, Tile) -> Result<(f64, Workload)> + '_ {
        move |_, t| {
            *calls += 1;
            Ok((if t == fast { 1.0 } else { 2.0 + t.tm as f64 }, FULL))
        }
    }

    #[test]
    fn the_choice_is_timed_once_then_read_back() {
        let dir = temp_dir("once");
        let fast = Tile::staged(8, 4);
        let mut calls = 0;
        let first = choose(
            &key("drv"),
            Some(&dir),
            &Tile::CANDIDATES,
            &mut timer(fast, &mut calls),
        );
        assert_eq!(
            calls,
            2 * Tile::CANDIDATES.len(),
            "every candidate, both families"
        );
        assert_eq!(
            first.tiles,
            Tiles {
                matmul: fast,
                conv: fast
            }
        );
        let path = cache_file(&dir, &key("drv"));
        assert_eq!(first.source, TileSource::Tuned(Ok(path.clone())));
        assert_eq!(first.timings.len(), 2 * Tile::CANDIDATES.len());

        let mut calls = 0;
        let again = choose(
            &key("drv"),
            Some(&dir),
            &Tile::CANDIDATES,
            &mut timer(Tile::DEFAULT, &mut calls),
        );
        assert_eq!(calls, 0, "read from the cache, not timed");
        assert_eq!(again.tiles, first.tiles);
        assert_eq!(again.source, TileSource::Cached(path));
        assert_eq!(again.timings, first.timings);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_new_driver_or_a_damaged_file_is_timed_again() {
        let dir = temp_dir("invalid");
        let mut calls = 0;
        choose(
            &key("old"),
            Some(&dir),
            &Tile::CANDIDATES,
            &mut timer(Tile::staged(2, 2), &mut calls),
        );
        // Same adapter, new driver: the same file, timed again and overwritten.
        let mut calls = 0;
        let new = choose(
            &key("new"),
            Some(&dir),
            &Tile::CANDIDATES,
            &mut timer(Tile::staged(8, 8), &mut calls),
        );
        assert_eq!(calls, 2 * Tile::CANDIDATES.len());
        assert_eq!(new.tiles.conv, Tile::staged(8, 8));
        assert!(read_cached(&dir, &key("old"), &fingerprint(), &Tile::CANDIDATES).is_none());
        assert!(read_cached(&dir, &key("new"), &fingerprint(), &Tile::CANDIDATES).is_some());
        // Another adapter does not read this one's choice.
        let other = AdapterKey {
            device: 0x2336,
            ..key("new")
        };
        assert!(read_cached(&dir, &other, &fingerprint(), &Tile::CANDIDATES).is_none());
        // Another fingerprint (new shaders) is not read.
        assert!(read_cached(&dir, &key("new"), "0", &Tile::CANDIDATES).is_none());
        // A choice outside the candidates is not read.
        assert!(read_cached(&dir, &key("new"), &fingerprint(), &[Tile::DEFAULT]).is_none());
        // A damaged file is timed again, without an error.
        std::fs::write(cache_file(&dir, &key("new")), "{ not json").unwrap();
        let mut calls = 0;
        let fixed = choose(
            &key("new"),
            Some(&dir),
            &Tile::CANDIDATES,
            &mut timer(Tile::DEFAULT, &mut calls),
        );
        assert_eq!(calls, 2 * Tile::CANDIDATES.len());
        assert_eq!(fixed.tiles, Tiles::default());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn failing_candidates_are_dropped_and_ties_keep_the_default() {
        let mut time = |_: Family, t: Tile| -> Result<(f64, Workload)> {
            if t.tm == 8 {
                Err(crate::Error::Device("does not compile".into()))
            } else {
                Ok((1.0, FULL))
            }
        };
        let c = choose(&key("x"), None, &Tile::CANDIDATES, &mut time);
        assert_eq!(c.tiles, Tiles::default(), "all ties: the first candidate");
        assert!(matches!(c.source, TileSource::Tuned(Err(_))));
        let failed: Vec<_> = c.timings.iter().filter(|t| t.error.is_some()).collect();
        assert_eq!(failed.len(), 4);
        assert!(failed
            .iter()
            .all(|t| t.ms.is_none() && t.workload.is_none() && t.tile.tm == 8));
        assert!(c
            .timings
            .iter()
            .filter(|t| t.error.is_none())
            .all(|t| t.workload == Some(FULL)));
        // Every candidate failing falls back to the default.
        let mut fail = |_: Family, _: Tile| -> Result<(f64, Workload)> {
            Err(crate::Error::Device("no".into()))
        };
        assert_eq!(
            choose(&key("y"), None, &Tile::CANDIDATES, &mut fail).tiles,
            Tiles::default()
        );
    }

    #[test]
    fn file_names_name_the_adapter_not_the_driver() {
        assert_eq!(
            key("a").file_name(),
            "test-gpu-9000--rev-2-vulkan-10de-2335.json"
        );
        assert_eq!(key("a").file_name(), key("b").file_name());
        let blank = AdapterKey {
            name: "??".into(),
            ..key("a")
        };
        assert!(blank.file_name().starts_with("adapter-vulkan"));
    }
}
