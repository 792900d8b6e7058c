use std::process::Stdio;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let n = 200;
    for variant in [
        "std-plain",
        "std-pg-pipes",
        "tokio-pg-pipes",
        "tokio-plain",
        "std-plain",
        "tokio-pg-pipes",
    ] {
        let mut spawn = Vec::new();
        let mut total = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            match variant {
                "std-plain" => {
                    let mut c = std::process::Command::new("/bin/sh");
                    c.arg("-c").arg("true");
                    let mut ch = c.spawn().unwrap();
                    spawn.push(t.elapsed().as_secs_f64() * 1e6);
                    ch.wait().unwrap();
                }
                "std-pg-pipes" => {
                    use std::os::unix::process::CommandExt;
                    let mut c = std::process::Command::new("/bin/sh");
                    c.arg("-c")
                        .arg("true")
                        .current_dir("/tmp")
                        .env("A", "b")
                        .stdin(Stdio::null())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .process_group(0);
                    let mut ch = c.spawn().unwrap();
                    spawn.push(t.elapsed().as_secs_f64() * 1e6);
                    ch.wait().unwrap();
                }
                "tokio-pg-pipes" => {
                    let mut c = tokio::process::Command::new("/bin/sh");
                    c.arg("-c")
                        .arg("true")
                        .current_dir("/tmp")
                        .env("A", "b")
                        .stdin(Stdio::null())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .process_group(0)
                        .kill_on_drop(true);
                    let mut ch = c.spawn().unwrap();
                    spawn.push(t.elapsed().as_secs_f64() * 1e6);
                    ch.wait().await.unwrap();
                }
                _ => {
                    let mut c = tokio::process::Command::new("/bin/sh");
                    c.arg("-c").arg("true");
                    let mut ch = c.spawn().unwrap();
                    spawn.push(t.elapsed().as_secs_f64() * 1e6);
                    ch.wait().await.unwrap();
                }
            }
            total.push(t.elapsed().as_secs_f64() * 1e6);
        }
        println!(
            "{variant:16} spawn median {:6.0} us   spawn+wait median {:6.0} us",
            median(spawn),
            median(total)
        );
    }
}
