//! A validated, compiled module, shared by every stream that uses it.

use crate::instance::{Instance, new_store};
use crate::{Engine, SmartModuleError, SmartModuleKind};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Exports every module has (defined by the SDK), checked at load.
pub(crate) const EXPORT_MEMORY: &str = "memory";
pub(crate) const EXPORT_ABI_VERSION: &str = "sluice_abi_version";
pub(crate) const EXPORT_ALLOC: &str = "sluice_alloc";
pub(crate) const EXPORT_DEALLOC: &str = "sluice_dealloc";
/// Optional exports: diagnostics after a trap, and the two ways to receive parameters.
pub(crate) const EXPORT_CURRENT_OFFSET: &str = "sluice_current_offset";
pub(crate) const EXPORT_PANIC_MESSAGE: &str = "sluice_panic_message";
pub(crate) const EXPORT_PARAMS: &str = "sluice_params";
pub(crate) const EXPORT_INIT: &str = "sluice_init";
/// Optional: shown the partition's last records before a stream starts.
pub(crate) const EXPORT_LOOK_BACK: &str = "sluice_look_back";

/// What loading learnt about a module, plus its compiled code.
pub(crate) struct Compiled {
    pub(crate) hash: [u8; 32],
    pub(crate) kind: SmartModuleKind,
    pub(crate) size_bytes: usize,
    pub(crate) has_params: bool,
    pub(crate) has_init: bool,
    pub(crate) has_look_back: bool,
    pub(crate) pre: wasmtime::InstancePre<crate::instance::HostState>,
}

/// How a module without a name is named in errors: `sha256:` and 12 hex digits.
pub(crate) fn short_hash(hash: &[u8; 32]) -> String {
    let hex: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

impl Compiled {
    /// Validates and compiles; see [`Engine::load`], which has checked the budget (and
    /// refused imports) already.
    pub(crate) fn compile(
        engine: &Engine,
        hash: [u8; 32],
        bytes: &[u8],
    ) -> Result<Self, SmartModuleError> {
        let name = short_hash(&hash);
        let module = wasmtime::Module::new(&engine.inner.wasmtime, bytes).map_err(|e| {
            SmartModuleError::NotWasm {
                module: name.clone(),
                reason: format!("{e:#}"),
            }
        })?;
        let transforms: Vec<SmartModuleKind> = module
            .exports()
            .filter_map(|e| SmartModuleKind::from_export_name(e.name()))
            .collect();
        let kind = match transforms.as_slice() {
            [] => return Err(SmartModuleError::NoTransformExport { module: name }),
            [one] => *one,
            several => {
                return Err(SmartModuleError::SeveralTransformExports {
                    module: name,
                    found: several.iter().map(|k| k.export_name().to_owned()).collect(),
                });
            }
        };
        let has_export = |n: &str| module.exports().any(|e| e.name() == n);
        let has_params = has_export(EXPORT_PARAMS);
        let has_init = has_export(EXPORT_INIT);
        let has_look_back = has_export(EXPORT_LOOK_BACK);
        let linker = wasmtime::Linker::new(&engine.inner.wasmtime);
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| SmartModuleError::NotWasm {
                module: name.clone(),
                reason: format!("{e:#}"),
            })?;
        let compiled = Self {
            hash,
            kind,
            size_bytes: bytes.len(),
            has_params,
            has_init,
            has_look_back,
            pre,
        };
        // Instantiate once to check the ABI version and the type of every required export
        // now, rather than when the first stream starts.
        let mut store = new_store(engine);
        let instance =
            compiled
                .pre
                .instantiate(&mut store)
                .map_err(|e| SmartModuleError::NotWasm {
                    module: name.clone(),
                    reason: format!("cannot be instantiated: {e:#}"),
                })?;
        let version = instance
            .get_typed_func::<(), u32>(&mut store, EXPORT_ABI_VERSION)
            .map_err(|e| SmartModuleError::MissingExport {
                module: name.clone(),
                export: EXPORT_ABI_VERSION.into(),
                problem: format!("is missing or not `() -> i32`: {e:#}"),
            })?;
        store.set_epoch_deadline(engine.inner.config.deadline_ticks());
        let found = version
            .call(&mut store, ())
            .map_err(|e| SmartModuleError::Trap {
                module: name.clone(),
                offset: None,
                message: format!("{EXPORT_ABI_VERSION}: {e:#}"),
            })?;
        if found != crate::ABI_VERSION {
            return Err(SmartModuleError::UnsupportedAbi {
                module: name,
                found,
                supported: crate::ABI_VERSION,
            });
        }
        crate::instance::Exports::resolve(&instance, &mut store, &compiled, &name)?;
        Ok(compiled)
    }
}

/// A loaded module: validated, compiled once, cheap to clone. Instantiate it per stream.
#[derive(Clone)]
pub struct Module {
    pub(crate) engine: Engine,
    pub(crate) compiled: Arc<Compiled>,
    name: Arc<str>,
}

impl Module {
    pub(crate) fn new(engine: Engine, compiled: Arc<Compiled>) -> Self {
        let name = short_hash(&compiled.hash).into();
        Self {
            engine,
            compiled,
            name,
        }
    }

    /// The same module, named `name` in its errors (e.g. its registry name or file path).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into().into();
        self
    }

    /// The name used in errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kind, read from the module's transform export.
    pub fn kind(&self) -> SmartModuleKind {
        self.compiled.kind
    }

    /// Fails with [`SmartModuleError::KindMismatch`] unless the module is of `expected` kind.
    pub fn expect_kind(&self, expected: SmartModuleKind) -> Result<(), SmartModuleError> {
        if self.kind() == expected {
            Ok(())
        } else {
            Err(SmartModuleError::KindMismatch {
                module: self.name().to_owned(),
                expected,
                found: self.kind(),
            })
        }
    }

    /// SHA-256 of the module's bytes: its identity in the cache.
    pub fn hash(&self) -> [u8; 32] {
        self.compiled.hash
    }

    /// The hash in lower-case hex.
    pub fn hash_hex(&self) -> String {
        self.compiled
            .hash
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Size of the module's bytes.
    pub fn size_bytes(&self) -> usize {
        self.compiled.size_bytes
    }

    /// Whether the module declares parameters (`#[smartmodule(..., params)]`).
    pub fn has_params(&self) -> bool {
        self.compiled.has_params
    }

    /// Whether the module has an `init` function.
    pub fn has_init(&self) -> bool {
        self.compiled.has_init
    }

    /// Whether the module has a `look_back` function (see
    /// [`Instance::look_back`]).
    pub fn has_look_back(&self) -> bool {
        self.compiled.has_look_back
    }

    /// A new sandbox for one stream. Parameters go to the module's params parser and its init
    /// function now, so bad parameters fail here, before any record flows. An aggregate
    /// starts from `initial_aggregate` (empty if `None`); other kinds ignore it.
    pub fn instantiate(
        &self,
        params: BTreeMap<String, String>,
        initial_aggregate: Option<Vec<u8>>,
    ) -> Result<Instance, SmartModuleError> {
        Instance::new(self.clone(), &params, initial_aggregate.unwrap_or_default())
    }
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("name", &self.name)
            .field("kind", &self.kind())
            .field("hash", &self.hash_hex())
            .finish()
    }
}
