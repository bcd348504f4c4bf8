//! `sluice smart-module ...` (aliases `sm`, `smartmodule`): the cluster's
//! SmartModule registry, and authoring modules without a cluster.

use clap::{Args, Subcommand};

use crate::{Globals, OutputArgs};

#[derive(Debug, Subcommand)]
pub enum SmartModuleCmd {
    /// Register a module in the cluster (replicated to every SPU).
    Create(CreateArgs),
    /// List registered modules: name, kind, size, hash, created.
    #[command(visible_alias = "ls")]
    List(OutputArgs),
    /// Show one registered module.
    Describe(DescribeArgs),
    /// Remove registered modules.
    Delete(DeleteArgs),
    /// Create a SmartModule project that builds against this repository's SDK.
    Generate(crate::smartmodule_dev::GenerateArgs),
    /// Build a SmartModule project to wasm32-unknown-unknown.
    Build(crate::smartmodule_dev::BuildArgs),
    /// Run a module on sample records, without a cluster.
    Test(crate::smartmodule_dev::TestArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name to register the module under.
    pub name: String,
    /// The compiled module.
    #[arg(long = "wasm-file", value_name = "PATH")]
    pub wasm_file: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    pub name: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub async fn run(cmd: SmartModuleCmd, globals: &Globals) -> anyhow::Result<()> {
    match cmd {
        SmartModuleCmd::Create(args) => crate::smartmodule_registry::create(args, globals).await,
        SmartModuleCmd::List(out) => crate::smartmodule_registry::list(out, globals).await,
        SmartModuleCmd::Describe(args) => {
            crate::smartmodule_registry::describe(args, globals).await
        }
        SmartModuleCmd::Delete(args) => crate::smartmodule_registry::delete(args, globals).await,
        SmartModuleCmd::Generate(args) => crate::smartmodule_dev::generate(args),
        SmartModuleCmd::Build(args) => crate::smartmodule_dev::build(args),
        SmartModuleCmd::Test(args) => crate::smartmodule_dev::test(args),
    }
}
