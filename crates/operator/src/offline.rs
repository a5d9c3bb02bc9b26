//! `render` and `check`: what the controller would do, without a cluster.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use buildpolicy_api::BuildPolicy;
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
    let text = if args.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?
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
        bail!("{} holds no BuildPolicy", args.file.display());
    }
    Ok(policies)
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
        let mut out = Vec::new();
        for policy in read_policies(args)? {
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
        print!("{}", out.join("---\n"));
        Ok(ExitCode::SUCCESS)
    })())
}

/// Validates each policy; exit 1 if any is refused.
pub fn check(args: &OfflineArgs) -> ExitCode {
    report((|| {
        let ceiling = ceiling(&args.ceiling)?;
        let mut ok = true;
        for policy in read_policies(args)? {
            let name = policy.metadata.name.clone().unwrap_or_default();
            match validate(&name, &policy.spec, &ceiling) {
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
