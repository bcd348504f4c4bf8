//! `sluice profile list | current | switch NAME | delete NAME`: the
//! connection profiles of `$SLUICE_HOME/config.toml`, as Fluvio's `profile`
//! command manages them. Profiles are written by `cluster start --local`
//! (profile `local`); certificate files they name are left where they are.

use anyhow::{Context, bail};
use clap::Subcommand;
use serde::Serialize;
use sluice_client::config::ClientConfig;

use crate::output::{OutputFormat, print_structured, print_table};
use crate::{Globals, OutputArgs};

#[derive(Debug, Subcommand)]
pub enum ProfileCmd {
    /// List the profiles; the current one is marked.
    List(OutputArgs),
    /// Print the current profile's name.
    Current,
    /// Make NAME the profile used when `--profile` is not given.
    Switch { name: String },
    /// Remove NAME from the configuration (its certificate files stay).
    Delete { name: String },
    /// Print a profile (the current one unless NAME is given) as one
    /// self-contained file, its certificates inline: point
    /// `SLUICE_PROFILE_PATH` (or Fluvio's `FLV_PROFILE_PATH`) at it on
    /// another machine. It holds the client's private key, if the profile
    /// has one: keep it as secret as the key.
    Export {
        name: Option<String>,
        #[arg(short = 'O', long = "output", value_enum, default_value = "toml")]
        output: ExportFormat,
    },
}

/// How `profile export` writes the profile.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ExportFormat {
    Toml,
    Json,
    Yaml,
}

#[derive(Serialize)]
struct ProfileRow {
    name: String,
    current: bool,
    endpoint: String,
    ca_cert: String,
    client_cert: Option<String>,
}

pub async fn run(cmd: ProfileCmd, globals: &Globals) -> anyhow::Result<()> {
    let path = ClientConfig::path(&globals.home);
    let mut config = ClientConfig::load(&globals.home)?;
    match cmd {
        ProfileCmd::List(out) => {
            let current = config.profile(None).map(|(name, _)| name.to_string());
            let rows: Vec<ProfileRow> = config
                .profiles
                .iter()
                .map(|(name, p)| ProfileRow {
                    name: name.clone(),
                    current: current.as_deref() == Some(name),
                    endpoint: p.endpoint.clone(),
                    ca_cert: p.ca_cert.display().to_string(),
                    client_cert: p.client_cert.as_ref().map(|c| c.display().to_string()),
                })
                .collect();
            match out.output {
                OutputFormat::Table if rows.is_empty() => {
                    println!(
                        "no profiles in {}; `sluice cluster start --local` writes one",
                        path.display()
                    );
                    Ok(())
                }
                OutputFormat::Table => {
                    let table: Vec<Vec<String>> = rows
                        .iter()
                        .map(|r| {
                            vec![
                                if r.current { "*" } else { "" }.to_string(),
                                r.name.clone(),
                                r.endpoint.clone(),
                                r.client_cert.clone().unwrap_or_else(|| "-".into()),
                            ]
                        })
                        .collect();
                    print_table(&["", "PROFILE", "ENDPOINT", "CLIENT CERTIFICATE"], &table);
                    Ok(())
                }
                other => print_structured(&rows, other),
            }
        }
        ProfileCmd::Current => match config.profile(None) {
            Some((name, _)) => {
                println!("{name}");
                Ok(())
            }
            None if config.profiles.is_empty() => bail!(
                "no profiles in {}; `sluice cluster start --local` writes one",
                path.display()
            ),
            None => bail!(
                "no current profile in {} (it has {}); choose one with `sluice profile switch NAME`",
                path.display(),
                names(&config)
            ),
        },
        ProfileCmd::Switch { name } => {
            known(&config, &name, &path)?;
            config.set_current(&name);
            config
                .save(&globals.home)
                .context("cannot switch profiles")?;
            println!("switched to profile {name}");
            Ok(())
        }
        ProfileCmd::Export { name, output } => {
            if let Some(name) = &name {
                known(&config, name, &path)?;
            }
            let Some((name, profile)) = config.profile(name.as_deref()) else {
                bail!(
                    "no current profile in {} ({}); name one: `sluice profile export NAME`",
                    path.display(),
                    names(&config)
                );
            };
            let exported =
                sluice_client::config::ExportedProfile::from_profile(&globals.home, name, profile)?;
            let text = match output {
                ExportFormat::Toml => toml::to_string(&exported)?,
                ExportFormat::Json => serde_json::to_string_pretty(&exported)? + "\n",
                ExportFormat::Yaml => serde_yaml::to_string(&exported)?,
            };
            if exported.tls.client_key.is_some() {
                eprintln!(
                    "note: the exported profile holds the client's private key; keep it secret"
                );
            }
            crate::output::write_stdout(text.as_bytes())
        }
        ProfileCmd::Delete { name } => {
            known(&config, &name, &path)?;
            let was_current = config.current_profile.as_deref() == Some(name.as_str());
            config.remove_profile(&name);
            config
                .save(&globals.home)
                .context("cannot delete the profile")?;
            if was_current {
                println!(
                    "deleted profile {name}, which was current; no profile is current now \
                     (`sluice profile switch NAME`)"
                );
            } else {
                println!("deleted profile {name}");
            }
            Ok(())
        }
    }
}

/// The profiles' names, for messages.
fn names(config: &ClientConfig) -> String {
    if config.profiles.is_empty() {
        return "no profiles".into();
    }
    config
        .profiles
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn known(config: &ClientConfig, name: &str, path: &std::path::Path) -> anyhow::Result<()> {
    if config.profiles.contains_key(name) {
        return Ok(());
    }
    bail!(
        "no profile {name:?} in {} (profiles: {})",
        path.display(),
        names(config)
    )
}
