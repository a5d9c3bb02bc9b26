//! `render` and `check`: what the controller would do, without a cluster.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use buildpolicy_api::BuildPolicy;
use buildpolicy_policy::digest::task_spec_digest;
use buildpolicy_policy::render::to_yaml;
use buildpolicy_policy::{Ceiling, Owner, render as render_policy, validate};
use serde::Deserialize;

use crate::cli::{CeilingArgs, OfflineArgs};

/// Reads the ceiling from a file and flags.
pub fn ceiling(args: &CeilingArgs) -> Result<Ceiling> {
    let mut ceiling = match &args.ceiling_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading ceiling file {}", path.display()))?;
            serde_yaml_ng::from_str(&text)
                .with_context(|| format!("parsing ceiling file {}", path.display()))?
        }
        None => Ceiling::default(),
    };
    if let Some(caps) = &args.allowed_capabilities {
        ceiling.allowed_capabilities = caps
            .iter()
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect();
    }
    if let Some(namespaces) = &args.protected_namespaces {
        ceiling.protected_namespaces = namespaces
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
    }
    if let Some(caps) = &args.user_namespace_required_for {
        ceiling.user_namespace_required_for = caps
            .iter()
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect();
    }
    Ok(ceiling)
}

fn read_policies(args: &OfflineArgs) -> Result<Vec<BuildPolicy>> {
    let Some(file) = &args.file else {
        return Ok(Vec::new());
    };
    let text = if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let mut policies = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
        let value = serde_yaml_ng::Value::deserialize(doc)
            .with_context(|| format!("document {} is not YAML", i + 1))?;
        if value.is_null() {
            continue;
        }
        let policy: BuildPolicy = serde_yaml_ng::from_value(value)
            .with_context(|| format!("document {} is not a BuildPolicy", i + 1))?;
        if policy.metadata.name.is_none() {
            bail!("document {}: metadata.name is required", i + 1);
        }
        policies.push(policy);
    }
    if policies.is_empty() {
        bail!("{} holds no BuildPolicy", file.display());
    }
    Ok(policies)
}

/// A Task of a `--task` file: its name, the file, and its spec digest.
struct TaskFile {
    name: String,
    file: String,
    digest: String,
}

fn read_tasks(args: &OfflineArgs) -> Result<Vec<TaskFile>> {
    let mut tasks = Vec::new();
    for path in &args.tasks {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading Task file {}", path.display()))?;
        let mut found = 0;
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let value = serde_json::Value::deserialize(doc)
                .with_context(|| format!("{} document {} is not YAML", path.display(), i + 1))?;
            if value.is_null() {
                continue;
            }
            if value["kind"] != "Task" {
                bail!(
                    "{} document {} is a {}, not a Tekton Task: give --task the Task's own file",
                    path.display(),
                    i + 1,
                    value["kind"].as_str().unwrap_or("document without a kind")
                );
            }
            let Some(name) = value["metadata"]["name"].as_str() else {
                bail!(
                    "{} document {}: metadata.name is required",
                    path.display(),
                    i + 1
                );
            };
            found += 1;
            tasks.push(TaskFile {
                name: name.to_owned(),
                file: path.display().to_string(),
                digest: task_spec_digest(value.get("spec").unwrap_or(&serde_json::Value::Null)),
            });
        }
        if found == 0 {
            bail!("{} holds no Tekton Task", path.display());
        }
    }
    Ok(tasks)
}

/// Where a policy's reviewed digests and the Task files disagree, one line
/// each naming the field and the digest to write.
fn digest_mismatches(policy: &BuildPolicy, tasks: &[TaskFile]) -> Vec<String> {
    tasks
        .iter()
        .filter_map(|t| {
            let reviewed = policy.spec.task_digests.get(&t.name)?;
            (reviewed != &t.digest).then(|| {
                format!(
                    "spec.taskDigests.{} is {reviewed}, but {} holds Task {} with digest {}: set that digest if the file is what was reviewed",
                    t.name, t.file, t.name, t.digest
                )
            })
        })
        .collect()
}

fn report(result: Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    })
}

/// Prints what each policy produces; refuses (exit 1) policies that fail validation.
pub fn render(args: &OfflineArgs) -> ExitCode {
    report((|| {
        let ceiling = ceiling(&args.ceiling)?;
        let tasks = read_tasks(args)?;
        let mut out = Vec::new();
        let policies = read_policies(args)?;
        if policies.is_empty() {
            bail!("render needs the policies: -f FILE");
        }
        for policy in policies {
            let mismatches = digest_mismatches(&policy, &tasks);
            if !mismatches.is_empty() {
                eprintln!(
                    "BuildPolicy {}: {}",
                    policy.metadata.name.as_deref().unwrap_or_default(),
                    mismatches.join("; ")
                );
                return Ok(ExitCode::FAILURE);
            }
            if let Err(rejection) = validate(
                policy.metadata.name.as_deref().unwrap_or_default(),
                &policy.spec,
                &ceiling,
            ) {
                eprintln!(
                    "BuildPolicy {}: {rejection}",
                    policy.metadata.name.as_deref().unwrap_or_default()
                );
                return Ok(ExitCode::FAILURE);
            }
            out.push(to_yaml(&render_policy(&Owner::of(&policy), &policy.spec)));
        }
        for t in &tasks {
            println!("# Task {} ({}): spec digest {}", t.name, t.file, t.digest);
        }
        print!("{}", out.join("---\n"));
        Ok(ExitCode::SUCCESS)
    })())
}

/// Validates each policy; exit 1 if any is refused.
pub fn check(args: &OfflineArgs) -> ExitCode {
    report((|| {
        let ceiling = ceiling(&args.ceiling)?;
        let tasks = read_tasks(args)?;
        for t in &tasks {
            println!("Task {} ({}): spec digest {}", t.name, t.file, t.digest);
        }
        let mut ok = true;
        for policy in read_policies(args)? {
            let name = policy.metadata.name.clone().unwrap_or_default();
            let mismatches = digest_mismatches(&policy, &tasks);
            match validate(&name, &policy.spec, &ceiling) {
                Ok(()) if !mismatches.is_empty() => {
                    ok = false;
                    println!("BuildPolicy {name}: {}", mismatches.join("; "));
                }
                Ok(()) => println!("BuildPolicy {name}: ok"),
                Err(rejection) => {
                    ok = false;
                    println!("BuildPolicy {name}: {rejection}");
                }
            }
        }
        Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })())
}
