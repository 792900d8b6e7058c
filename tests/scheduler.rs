//! The scheduler: parallelism bounds, resources, GPU placement on a simulated inventory,
//! retries, timeouts and progress.

use crate::support::Test;

/// `n` stages that each record when they start and end, sleep, and write `extra`'s output.
fn timed_stages(n: usize, sleep: &str, resources: &str) -> String {
    let mut yaml = String::from("version: 1\nname: timed\nstages:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  s{i}:\n    run: date +%s.%N > ${{{{ outputs.start }}}}; echo \"${{CUDA_VISIBLE_DEVICES-unset}}\" > ${{{{ outputs.dev }}}}; sleep {sleep}; date +%s.%N > ${{{{ outputs.end }}}}\n    outputs:\n      start: t/{i}.start\n      end: t/{i}.end\n      dev: t/{i}.dev\n{resources}"
        ));
    }
    yaml
}

/// (start, end, CUDA_VISIBLE_DEVICES) of each stage.
fn spans(t: &Test, n: usize) -> Vec<(f64, f64, String)> {
    (0..n)
        .map(|i| {
            let read = |f: &str| t.read(&format!("t/{i}.{f}")).trim().to_owned();
            (
                read("start").parse().unwrap(),
                read("end").parse().unwrap(),
                read("dev"),
            )
        })
        .collect()
}

/// The most stages running at one moment.
fn max_overlap(spans: &[(f64, f64, String)]) -> usize {
    spans
        .iter()
        .map(|(s, _, _)| spans.iter().filter(|(a, b, _)| a <= s && s < b).count())
        .max()
        .unwrap_or(0)
}

#[test]
fn j1_runs_one_stage_at_a_time() {
    let t = Test::new();
    t.workflow(&timed_stages(4, "0.2", ""));
    t.run(&["-j", "1"]);
    assert_eq!(max_overlap(&spans(&t, 4)), 1);
}

#[test]
fn gpu_stages_never_share_a_device() {
    let t = Test::new();
    t.workflow(&timed_stages(5, "0.3", "    resources: {gpu: 1}\n"));
    let r = t.run(&["-j", "5", "--devices", "gpu:0,gpu:1"]);
    let spans = spans(&t, 5);
    assert_eq!(max_overlap(&spans), 2, "{spans:?}");
    for (i, (s, e, dev)) in spans.iter().enumerate() {
        assert!(
            dev == "0" || dev == "1",
            "stage {i} saw CUDA_VISIBLE_DEVICES={dev:?}"
        );
        for (s2, e2, dev2) in &spans[i + 1..] {
            if s < e2 && s2 < e {
                assert_ne!(dev, dev2, "overlapping stages shared a GPU: {spans:?}");
            }
        }
    }
    let j = r.json();
    for (i, stage) in j["stages"].as_array().unwrap().iter().enumerate() {
        assert_eq!(stage["device"], format!("gpu:{}", spans[i].2), "{j}");
    }
    assert!(t.read("wf.lock").contains("device: gpu:"));
    // Where a stage ran is not part of its key: on other devices everything is cached.
    let r = t.run(&["--devices", "gpu:7"]);
    assert!(r.statuses().iter().all(|(_, s)| s == "cached"));
}

#[test]
fn a_stage_that_can_never_fit_fails_at_plan_time() {
    let t = Test::new();
    t.workflow("version: 1\nname: big\nstages:\n  train:\n    run: echo hi > ${{ outputs.o }}\n    outputs: {o: o.txt}\n    resources:\n      gpu: 3\n");
    let r = t
        .sluice(&["run", "wf.yaml", "--devices", "gpu:0,gpu:1"])
        .fails(1);
    r.stderr_has("stage `train` can never run on this machine: it asks for 3 GPUs and the device inventory has 2 that qualify (gpu:0, gpu:1)");
    r.stderr_has("--> wf.yaml:7:5");
    assert!(!t.exists("o.txt"));
    let r = t.sluice(&["run", "wf.yaml", "--devices", "cpu"]).fails(1);
    r.stderr_has("it asks for 3 GPUs and the device inventory has none");
    r.stderr_has("fallback: cpu");
    let r = t
        .sluice(&[
            "run",
            "wf.yaml",
            "--devices",
            "gpu:0=16GiB,gpu:1=16GiB,gpu:2=80GiB",
        ])
        .ok();
    assert!(r.stderr.contains("ran"), "{}", r.stderr);
}

#[test]
fn gpu_memory_and_host_memory_are_checked() {
    let t = Test::new();
    t.workflow("version: 1\nname: big\nstages:\n  train:\n    run: 'true'\n    resources: {gpu: 1, gpu_memory: 40GiB}\n");
    t.sluice(&["run", "wf.yaml", "--devices", "gpu:0=24GiB"])
        .fails(1)
        .stderr_has("with 40GiB each");
    t.sluice(&[
        "run",
        "wf.yaml",
        "--devices",
        "gpu:0=24GiB,gpu:1=80GiB",
        "--json",
    ])
    .ok();
    t.workflow("version: 1\nname: big\nstages:\n  train:\n    run: 'true'\n    resources: {memory: 100TiB}\n");
    t.sluice(&["run", "wf.yaml"])
        .fails(1)
        .stderr_has("it asks for 100TiB of memory");
}

#[test]
fn fallback_cpu_runs_a_gpu_stage_without_gpus() {
    let t = Test::new();
    t.workflow(&timed_stages(
        1,
        "0",
        "    resources: {gpu: 1, fallback: cpu}\n",
    ));
    let r = t.run(&["--devices", "cpu"]);
    assert_eq!(r.json()["stages"][0]["device"], "cpu");
    assert_eq!(
        t.read("t/0.dev").trim(),
        "",
        "GPUs are hidden from a fallback stage"
    );
    // With GPUs, the fallback does not apply.
    let t = Test::new();
    t.workflow(&timed_stages(
        1,
        "0",
        "    resources: {gpu: 1, fallback: cpu}\n",
    ));
    let r = t.run(&["--devices", "gpu:3"]);
    assert_eq!(r.json()["stages"][0]["device"], "gpu:3");
    assert_eq!(t.read("t/0.dev").trim(), "3");
}

#[test]
fn cpu_slots_bound_what_runs_beside_a_stage() {
    let t = Test::new();
    let mut yaml = timed_stages(3, "0.3", "");
    yaml = yaml.replacen(
        "      dev: t/0.dev\n",
        "      dev: t/0.dev\n    resources: {cpu: 2}\n",
        1,
    );
    t.workflow(&yaml);
    t.run(&["-j", "2"]);
    let spans = spans(&t, 3);
    let (s0, e0, _) = &spans[0];
    for (s, e, _) in &spans[1..] {
        assert!(
            !(s < e0 && s0 < e),
            "a stage ran beside the one holding both slots: {spans:?}"
        );
    }
}

#[test]
fn retries_run_a_failing_command_again() {
    let t = Test::new();
    t.workflow(
        "version: 1\nname: flaky\nstages:\n  flaky:\n    run: echo x >> attempts; [ $(wc -l < attempts) -ge 3 ] && echo ok > ${{ outputs.o }}\n    outputs: {o: o.txt}\n    retries: 2\n",
    );
    let r = t.sluice(&["run", "wf.yaml", "--json"]).ok();
    r.stderr_has("(attempt 1 of 3); retrying");
    assert_eq!(r.status_of("flaky"), "ran");
    assert_eq!(t.read("attempts").lines().count(), 3);
    // Retries are not part of the key.
    t.workflow(&t.read("wf.yaml").replace("retries: 2", "retries: 5"));
    assert_eq!(t.run(&[]).status_of("flaky"), "cached");
}

#[test]
fn a_timeout_stops_the_command() {
    let t = Test::new();
    t.workflow("version: 1\nname: slow\nstages:\n  slow:\n    run: sleep 30; echo > ${{ outputs.o }}\n    outputs: {o: o.txt}\n    timeout: 300ms\n");
    let started = std::time::Instant::now();
    let r = t.sluice(&["run", "wf.yaml"]).fails(1);
    r.stderr_has("stage `slow`: timed out after 300ms");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn stages_report_progress() {
    let t = Test::new();
    t.workflow("version: 1\nname: p\nstages:\n  train:\n    run: \"echo 'sluice-progress: step 1/2 loss 0.5'; echo done > ${{ outputs.o }}\"\n    outputs: {o: o.txt}\n");
    let r = t.sluice(&["run", "wf.yaml", "--progress", "plain"]).ok();
    r.stderr_has("progress  train step 1/2 loss 0.5");
    r.stderr_has("running   train cpu");
}

#[test]
fn the_summary_gives_each_commands_own_time() {
    let t = Test::new();
    t.workflow("version: 1\nname: nap\nstages:\n  nap:\n    run: sleep 0.3; echo > ${{ outputs.o }}\n    outputs: {o: o.txt}\n");
    let j = t.sluice(&["run", "wf.yaml", "--json"]).ok().json();
    let stage = &j["stages"][0];
    let run_ms = stage["run_ms"].as_f64().unwrap();
    let duration_ms = stage["duration_ms"].as_u64().unwrap() as f64;
    assert!(run_ms >= 300.0, "{stage}");
    assert!(run_ms <= duration_ms + 1.0, "{stage}");
    // A cached stage did no work of its own.
    let j = t.sluice(&["run", "wf.yaml", "--json"]).ok().json();
    assert_eq!(j["stages"][0]["status"], "cached");
    assert!(j["stages"][0].get("run_ms").is_none());
}

#[test]
fn cuda_visible_devices_narrows_a_given_inventory_only_when_detected() {
    // A `--devices` list is taken as it is; CUDA_VISIBLE_DEVICES applies to detected GPUs.
    let t = Test::new();
    let mut c = t.command(&["devices", "--json", "--devices", "gpu:0,gpu:1"]);
    c.env("CUDA_VISIBLE_DEVICES", "1");
    let out = c.output().unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["gpus"].as_array().unwrap().len(), 2);
    // With nothing to detect (no nvidia-smi on PATH), an empty CUDA_VISIBLE_DEVICES leaves none.
    let mut c = t.command(&["devices", "--json"]);
    c.env("CUDA_VISIBLE_DEVICES", "")
        .env("PATH", "/nonexistent");
    let out = c.output().unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["gpus"].as_array().unwrap().len(), 0);
    assert_eq!(j["source"], "none");
}

#[test]
fn devices_prints_the_inventory() {
    let t = Test::new();
    let r = t
        .sluice(&["devices", "--devices", "gpu:0=80GiB,gpu:1=40GiB"])
        .ok();
    r.stdout_has("gpu:0  80GiB  (from --devices)");
    let j = t
        .sluice(&["devices", "--json", "--devices", "gpu:0"])
        .ok()
        .json();
    assert_eq!(j["gpus"][0]["id"], 0);
    let mut c = t.command(&["devices", "--json"]);
    c.env("SLUICE_DEVICES", "cpu");
    let out = c.output().unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["gpus"].as_array().unwrap().len(), 0);
    t.sluice(&["devices", "--devices", "tpu:0"])
        .fails(1)
        .stderr_has("invalid device `tpu:0`");
}

#[test]
fn resource_typos_are_errors() {
    let t = Test::new();
    t.workflow("version: 1\nname: x\nstages:\n  a:\n    run: x\n    resources: {gpus: 1}\n");
    t.sluice(&["validate", "wf.yaml"])
        .fails(1)
        .stderr_has("did you mean `gpu`?");
    t.workflow(
        "version: 1\nname: x\nstages:\n  a:\n    run: x\n    resources: {memory: 8 parsecs}\n",
    );
    t.sluice(&["validate", "wf.yaml"])
        .fails(1)
        .stderr_has("invalid size `8 parsecs`");
    t.workflow("version: 1\nname: x\nstages:\n  a:\n    run: x\n    timeout: soon\n");
    t.sluice(&["validate", "wf.yaml"])
        .fails(1)
        .stderr_has("invalid duration `soon`");
    t.workflow("version: 1\nname: x\nstages:\n  a:\n    run: x\n    resources: {fallback: cpu}\n");
    t.sluice(&["validate", "wf.yaml"])
        .fails(1)
        .stderr_has("sets `fallback` without asking for a GPU");
}
