//! `smart-module create | list | describe | delete`: the cluster's registry.
//! Modules are validated by the node that receives them and stored in the
//! controller's replicated state, so every SPU can run them.

use anyhow::Context;
use serde::Serialize;
use sluice_client::proto::SmartModuleInfo;

use crate::output::{OutputFormat, human_bytes, print_structured, print_table, rfc3339_ms};
use crate::smartmodule_cmd::{CreateArgs, DeleteArgs, DescribeArgs};
use crate::{Globals, OutputArgs};

/// A module as printed with `-O json|yaml`; field names are a stable interface.
#[derive(Debug, Serialize)]
struct SmartModuleOut {
    name: String,
    kind: &'static str,
    size_bytes: u64,
    hash: String,
    created: String,
}

impl From<&SmartModuleInfo> for SmartModuleOut {
    fn from(m: &SmartModuleInfo) -> Self {
        Self {
            name: m.name.clone(),
            kind: m.kind.as_str(),
            size_bytes: m.size_bytes,
            hash: m.hash.clone(),
            created: rfc3339_ms(m.created_ms),
        }
    }
}

pub async fn create(args: CreateArgs, globals: &Globals) -> anyhow::Result<()> {
    let wasm = std::fs::read(&args.wasm_file)
        .with_context(|| format!("cannot read {}", args.wasm_file.display()))?;
    let client = crate::connect(globals).await?;
    let info = client.create_smartmodule(&args.name, wasm).await?;
    // Fluvio's line, word for word (scripts compare it whole);
    // `smart-module describe` shows the kind and size.
    println!("smartmodule \"{}\" has been created.", info.name);
    Ok(())
}

pub async fn list(out: OutputArgs, globals: &Globals) -> anyhow::Result<()> {
    let client = crate::connect(globals).await?;
    let modules: Vec<SmartModuleOut> = client
        .list_smartmodules()
        .await?
        .iter()
        .map(Into::into)
        .collect();
    print(&modules, out.output)
}

pub async fn describe(args: DescribeArgs, globals: &Globals) -> anyhow::Result<()> {
    let client = crate::connect(globals).await?;
    let module = SmartModuleOut::from(&client.describe_smartmodule(&args.name).await?);
    match args.output.output {
        OutputFormat::Table => print(&[module], OutputFormat::Table),
        other => print_structured(&module, other),
    }
}

pub async fn delete(args: DeleteArgs, globals: &Globals) -> anyhow::Result<()> {
    let client = crate::connect(globals).await?;
    for name in &args.names {
        client.delete_smartmodule(name).await?;
        println!("smart-module \"{name}\" deleted");
    }
    Ok(())
}

fn print(modules: &[SmartModuleOut], format: OutputFormat) -> anyhow::Result<()> {
    match format {
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = modules
                .iter()
                .map(|m| {
                    vec![
                        m.name.clone(),
                        m.kind.to_string(),
                        human_bytes(m.size_bytes),
                        m.hash.chars().take(16).collect(),
                        m.created.clone(),
                    ]
                })
                .collect();
            print_table(&["NAME", "KIND", "SIZE", "HASH", "CREATED"], &rows);
            Ok(())
        }
        other => print_structured(&modules, other),
    }
}
