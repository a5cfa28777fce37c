//! The job files in `deploy/`: the Kubernetes manifests parse as YAML and their Jobs have the
//! fields a sharded study depends on (an Indexed Job whose completions equal the shard count
//! on its command line, the shared volume mounted where the commands write, the settings
//! where they read them), every command they run parses as a `distill` command line, and the
//! Slurm scripts chain the stages as docs/scale-out.md says.

use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).unwrap_or_else(|e| panic!("deploy/{file}: {e}"))
}

fn yaml(file: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(file)).unwrap_or_else(|e| panic!("deploy/{file}: {e}"))
}

fn str_of<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {y:?}"))
}

/// Asserts that `args` (after the program name) parse as a `distill` command line.
fn parses(args: &[String]) {
    let out = Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(args)
        .env("DISTILL_PARSE_ONLY", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "distill {args:?} does not parse:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Job of the manifests: its one container's command, its mounts (path → volume) and
/// volumes (name → claim or config map).
struct Job {
    name: String,
    spec: Yaml,
    command: Vec<String>,
    mounts: Vec<(String, String)>,
    volumes: Vec<(String, Yaml)>,
    image: String,
}

fn job(file: &str) -> Job {
    let docs = yaml(file);
    assert_eq!(docs.len(), 1, "deploy/{file}: one document");
    let d = &docs[0];
    assert_eq!(str_of(&d["apiVersion"], "apiVersion"), "batch/v1");
    assert_eq!(str_of(&d["kind"], "kind"), "Job");
    let spec = d["spec"].clone();
    let pod = &spec["template"]["spec"];
    assert_eq!(str_of(&pod["restartPolicy"], "restartPolicy"), "Never");
    let containers = pod["containers"].as_vec().expect("containers");
    assert_eq!(containers.len(), 1, "{file}: one container");
    let c = &containers[0];
    let command: Vec<String> = c["command"]
        .as_vec()
        .expect("command")
        .iter()
        .map(|a| str_of(a, "a command argument").to_string())
        .collect();
    let mounts = c["volumeMounts"]
        .as_vec()
        .expect("volumeMounts")
        .iter()
        .map(|m| {
            (
                str_of(&m["mountPath"], "mountPath").to_string(),
                str_of(&m["name"], "a mount's name").to_string(),
            )
        })
        .collect();
    let volumes = pod["volumes"]
        .as_vec()
        .expect("volumes")
        .iter()
        .map(|v| (str_of(&v["name"], "a volume's name").to_string(), v.clone()))
        .collect();
    Job {
        name: str_of(&d["metadata"]["name"], "metadata.name").to_string(),
        image: str_of(&c["image"], "image").to_string(),
        spec,
        command,
        mounts,
        volumes,
    }
}

impl Job {
    /// The value after `flag` in the command.
    fn arg(&self, flag: &str) -> &str {
        let i = self
            .command
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{}: no {flag} in {:?}", self.name, self.command));
        &self.command[i + 1]
    }

    /// The volume mounted at the longest mount path that holds `path`.
    fn volume_of(&self, path: &str) -> &Yaml {
        let (_, name) = self
            .mounts
            .iter()
            .filter(|(m, _)| Path::new(path).starts_with(m))
            .max_by_key(|(m, _)| m.len())
            .unwrap_or_else(|| panic!("{}: nothing is mounted over {path}", self.name));
        &self
            .volumes
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{}: the mount {name} names no volume", self.name))
            .1
    }

    /// The command parses as distill's, and the study directory is on the shared claim.
    fn check(&self, claim: &str, study_dir: &str) {
        assert_eq!(self.command[0], "distill", "{}", self.name);
        parses(&self.command[1..]);
        let dir = if self.command.contains(&"--merge".to_string()) {
            self.arg("--merge")
        } else {
            self.arg("--out")
        };
        assert_eq!(
            dir, study_dir,
            "{}: every Job works on one directory",
            self.name
        );
        let v = self.volume_of(dir);
        assert_eq!(
            str_of(&v["persistentVolumeClaim"]["claimName"], "claimName"),
            claim,
            "{}: the study directory is on the shared claim",
            self.name
        );
    }
}

#[test]
fn the_kubernetes_indexed_job_runs_one_shard_per_index_on_the_shared_volume() {
    // The shared volume and the settings.
    let storage = yaml("kubernetes/storage.yaml");
    let kind = |k: &str| {
        storage
            .iter()
            .find(|d| d["kind"].as_str() == Some(k))
            .unwrap_or_else(|| panic!("storage.yaml has no {k}"))
    };
    let pvc = kind("PersistentVolumeClaim");
    let claim = str_of(&pvc["metadata"]["name"], "the claim's name");
    let modes = pvc["spec"]["accessModes"].as_vec().unwrap();
    assert_eq!(
        modes
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect::<Vec<_>>(),
        ["ReadWriteMany"],
        "pods on several nodes mount the study directory at once"
    );
    let config_map = kind("ConfigMap");
    let config_name = str_of(&config_map["metadata"]["name"], "the ConfigMap's name");
    let settings = str_of(&config_map["data"]["study.toml"], "data.study.toml");
    let table: toml::Table = settings.parse().expect("study.toml is TOML");
    assert!(table.contains_key("methods") && table.contains_key("data"));
    // The settings are deploy/study.toml's (the file's comments aside).
    let shipped: toml::Table = read("study.toml").parse().unwrap();
    assert_eq!(table, shipped);

    // The shards: an Indexed Job whose command takes its index from JOB_COMPLETION_INDEX.
    let shards = job("kubernetes/shards.yaml");
    let spec = &shards.spec;
    assert_eq!(str_of(&spec["completionMode"], "completionMode"), "Indexed");
    let completions = spec["completions"].as_i64().expect("completions");
    let parallelism = spec["parallelism"].as_i64().expect("parallelism");
    assert!(completions >= 1 && (1..=completions).contains(&parallelism));
    assert!(spec["backoffLimitPerIndex"]
        .as_i64()
        .is_some_and(|b| b >= 1));
    assert_eq!(
        shards.arg("--shard"),
        format!("auto/{completions}"),
        "the shard count on the command line is the Job's completions"
    );
    let study_dir = shards.arg("--out").to_string();
    shards.check(claim, &study_dir);
    // The settings file is the ConfigMap's key, mounted where --config reads it.
    let config = Path::new(shards.arg("--config"));
    assert_eq!(config.file_name().unwrap(), "study.toml");
    let v = shards.volume_of(config.to_str().unwrap());
    assert_eq!(
        str_of(&v["configMap"]["name"], "configMap.name"),
        config_name
    );

    // The teachers stage and the merge work on the same directory, with the same image.
    let teachers = job("kubernetes/teachers.yaml");
    assert_eq!(teachers.arg("--stage"), "teachers");
    assert_eq!(teachers.arg("--config"), shards.arg("--config"));
    teachers.check(claim, &study_dir);
    let merge = job("kubernetes/merge.yaml");
    merge.check(claim, &study_dir);
    for j in [&teachers, &merge] {
        assert_eq!(j.image, shards.image, "{}", j.name);
    }
    // run.sh applies them in order and waits between them.
    let run = read("kubernetes/run.sh");
    let at = |what: &str| {
        run.find(what)
            .unwrap_or_else(|| panic!("run.sh does not {what}"))
    };
    assert!(at("storage.yaml") < at("teachers.yaml"));
    assert!(at("ended distill-teachers") < at("shards.yaml"));
    assert!(at("ended distill-shards") < at("merge.yaml"));
}

#[test]
fn the_slurm_scripts_chain_teachers_shards_and_merge() {
    let submit = read("slurm/submit.sh");
    for needle in [
        "--dependency=\"afterok:$teachers\"",
        "--array=\"0-$((shards - 1))\"",
        "--dependency=\"afterany:$array\"",
    ] {
        assert!(submit.contains(needle), "submit.sh lacks {needle}");
    }
    let shards = read("slurm/shards.sbatch");
    assert!(shards.contains("#SBATCH --array=0-2"));
    // Each script's distill command, with the variables submit.sh exports filled in.
    for (file, needle) in [
        ("slurm/teachers.sbatch", "--stage teachers"),
        ("slurm/shards.sbatch", "--shard auto"),
        ("slurm/merge.sbatch", "--merge"),
    ] {
        let script = read(file);
        let line = script
            .split("exec \"${DISTILL:-distill}\" ")
            .nth(1)
            .unwrap_or_else(|| panic!("{file}: no exec of distill"))
            .replace("\\\n", " ");
        let line = line.lines().next().unwrap();
        assert!(line.contains(needle), "{file}: {line}");
        let args: Vec<String> = line
            .replace("\"$STUDY_CONFIG\"", "study.toml")
            .replace("\"$STUDY_DIR\"", "/shared/study")
            .split_whitespace()
            .map(String::from)
            .collect();
        parses(&args);
    }
}
