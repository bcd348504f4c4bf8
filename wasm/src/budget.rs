//! The pre-compile budget: what a module may contain before the engine spends time and
//! memory compiling it.
//!
//! Compiling costs out of proportion to a module's size (a 117 KiB module took Cranelift 29 s
//! and 1 GB), and wasmtime offers no way to stop a compile once started. So the engine first
//! reads the module's sections with `wasmparser` (no validation, no compilation: one pass over
//! the bytes) and refuses a module over any bound of `sluice_proto::limits`
//! (`SMARTMODULE_*_MAX`) with [`SmartModuleError::OverLimit`], which names the bound. The
//! bounds are wire-visible because every node must agree: a module registered through one
//! node is compiled by all of them.

use crate::SmartModuleError;
use sluice_proto::limits as l;
use std::fmt;
use wasmparser::{
    BlockType, CompositeInnerType, Encoding, FunctionBody, Operator, Parser, Payload, ValType,
};

/// One bound of the pre-compile budget; each is a constant of `sluice_proto::limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModuleLimit {
    /// `SMARTMODULE_SIZE_BYTES_MAX`: the module's bytes.
    SizeBytes,
    /// `SMARTMODULE_CODE_BYTES_MAX`: the code section.
    CodeBytes,
    /// `SMARTMODULE_FUNCTIONS_MAX`: functions defined.
    Functions,
    /// `SMARTMODULE_FUNCTION_BODY_BYTES_MAX`: one function body.
    FunctionBodyBytes,
    /// `SMARTMODULE_LOCALS_PER_FUNCTION_MAX`: locals of one function.
    LocalsPerFunction,
    /// `SMARTMODULE_LOCALS_TOTAL_MAX`: locals of all functions.
    LocalsTotal,
    /// `SMARTMODULE_TYPES_MAX`: types.
    Types,
    /// `SMARTMODULE_EXPORTS_MAX`: exports.
    Exports,
    /// `SMARTMODULE_GLOBALS_MAX`: globals.
    Globals,
    /// `SMARTMODULE_DATA_SEGMENTS_MAX`: data segments.
    DataSegments,
    /// `SMARTMODULE_ELEMENT_SEGMENTS_MAX`: element segments.
    ElementSegments,
    /// `SMARTMODULE_TABLES_MAX`: tables.
    Tables,
    /// `SMARTMODULE_TABLE_INITIAL_ELEMENTS_MAX`: initial elements of one table.
    TableInitialElements,
    /// `SMARTMODULE_MEMORIES_MAX`: memories.
    Memories,
    /// `SMARTMODULE_MEMORY_INITIAL_BYTES_MAX`: initial bytes of one memory.
    MemoryInitialBytes,
    /// `SMARTMODULE_BR_TABLE_TARGETS_MAX`: targets of one `br_table`.
    BrTableTargets,
    /// `SMARTMODULE_CONTROL_DEPTH_MAX`: blocks open at once in one function.
    ControlDepth,
    /// `SMARTMODULE_LOOP_DEPTH_MAX`: loops open at once in one function.
    LoopDepth,
    /// `SMARTMODULE_LOOP_CARRIED_VALUES_MAX`: accesses to locals inside loops and parameters
    /// of loops, each counted once per loop around it.
    LoopCarriedValues,
}

impl ModuleLimit {
    /// Every bound, in the order the figures are reported.
    pub const ALL: [ModuleLimit; 19] = [
        Self::SizeBytes,
        Self::CodeBytes,
        Self::Functions,
        Self::FunctionBodyBytes,
        Self::LocalsPerFunction,
        Self::LocalsTotal,
        Self::Types,
        Self::Exports,
        Self::Globals,
        Self::DataSegments,
        Self::ElementSegments,
        Self::Tables,
        Self::TableInitialElements,
        Self::Memories,
        Self::MemoryInitialBytes,
        Self::BrTableTargets,
        Self::ControlDepth,
        Self::LoopDepth,
        Self::LoopCarriedValues,
    ];

    /// The bound's value.
    pub fn max(self) -> u64 {
        match self {
            Self::SizeBytes => l::SMARTMODULE_SIZE_BYTES_MAX as u64,
            Self::CodeBytes => l::SMARTMODULE_CODE_BYTES_MAX as u64,
            Self::Functions => l::SMARTMODULE_FUNCTIONS_MAX.into(),
            Self::FunctionBodyBytes => l::SMARTMODULE_FUNCTION_BODY_BYTES_MAX as u64,
            Self::LocalsPerFunction => l::SMARTMODULE_LOCALS_PER_FUNCTION_MAX.into(),
            Self::LocalsTotal => l::SMARTMODULE_LOCALS_TOTAL_MAX.into(),
            Self::Types => l::SMARTMODULE_TYPES_MAX.into(),
            Self::Exports => l::SMARTMODULE_EXPORTS_MAX.into(),
            Self::Globals => l::SMARTMODULE_GLOBALS_MAX.into(),
            Self::DataSegments => l::SMARTMODULE_DATA_SEGMENTS_MAX.into(),
            Self::ElementSegments => l::SMARTMODULE_ELEMENT_SEGMENTS_MAX.into(),
            Self::Tables => l::SMARTMODULE_TABLES_MAX.into(),
            Self::TableInitialElements => l::SMARTMODULE_TABLE_INITIAL_ELEMENTS_MAX,
            Self::Memories => l::SMARTMODULE_MEMORIES_MAX.into(),
            Self::MemoryInitialBytes => l::SMARTMODULE_MEMORY_INITIAL_BYTES_MAX,
            Self::BrTableTargets => l::SMARTMODULE_BR_TABLE_TARGETS_MAX.into(),
            Self::ControlDepth => l::SMARTMODULE_CONTROL_DEPTH_MAX.into(),
            Self::LoopDepth => l::SMARTMODULE_LOOP_DEPTH_MAX.into(),
            Self::LoopCarriedValues => l::SMARTMODULE_LOOP_CARRIED_VALUES_MAX,
        }
    }

    /// The name of the constant in `sluice_proto::limits`, so an operator can find it.
    pub fn constant(self) -> &'static str {
        match self {
            Self::SizeBytes => "SMARTMODULE_SIZE_BYTES_MAX",
            Self::CodeBytes => "SMARTMODULE_CODE_BYTES_MAX",
            Self::Functions => "SMARTMODULE_FUNCTIONS_MAX",
            Self::FunctionBodyBytes => "SMARTMODULE_FUNCTION_BODY_BYTES_MAX",
            Self::LocalsPerFunction => "SMARTMODULE_LOCALS_PER_FUNCTION_MAX",
            Self::LocalsTotal => "SMARTMODULE_LOCALS_TOTAL_MAX",
            Self::Types => "SMARTMODULE_TYPES_MAX",
            Self::Exports => "SMARTMODULE_EXPORTS_MAX",
            Self::Globals => "SMARTMODULE_GLOBALS_MAX",
            Self::DataSegments => "SMARTMODULE_DATA_SEGMENTS_MAX",
            Self::ElementSegments => "SMARTMODULE_ELEMENT_SEGMENTS_MAX",
            Self::Tables => "SMARTMODULE_TABLES_MAX",
            Self::TableInitialElements => "SMARTMODULE_TABLE_INITIAL_ELEMENTS_MAX",
            Self::Memories => "SMARTMODULE_MEMORIES_MAX",
            Self::MemoryInitialBytes => "SMARTMODULE_MEMORY_INITIAL_BYTES_MAX",
            Self::BrTableTargets => "SMARTMODULE_BR_TABLE_TARGETS_MAX",
            Self::ControlDepth => "SMARTMODULE_CONTROL_DEPTH_MAX",
            Self::LoopDepth => "SMARTMODULE_LOOP_DEPTH_MAX",
            Self::LoopCarriedValues => "SMARTMODULE_LOOP_CARRIED_VALUES_MAX",
        }
    }

    /// What is counted, as it reads after a number ("3 functions").
    fn counted(self) -> &'static str {
        match self {
            Self::SizeBytes => "bytes of module",
            Self::CodeBytes => "bytes of code (all function bodies)",
            Self::Functions => "functions",
            Self::FunctionBodyBytes => "bytes of function body",
            Self::LocalsPerFunction => "locals (parameters included) in one function",
            Self::LocalsTotal => "locals in all functions",
            Self::Types => "types",
            Self::Exports => "exports",
            Self::Globals => "globals",
            Self::DataSegments => "data segments",
            Self::ElementSegments => "element segments",
            Self::Tables => "tables",
            Self::TableInitialElements => "initial elements of one table",
            Self::Memories => "memories",
            Self::MemoryInitialBytes => "initial bytes of memory",
            Self::BrTableTargets => "targets of one br_table",
            Self::ControlDepth => "blocks nested in one function",
            Self::LoopDepth => "loops nested in one function",
            Self::LoopCarriedValues => {
                "values carried by loop headers (accesses to locals inside loops and loop parameters, each counted once per loop around it)"
            }
        }
    }
}

impl fmt::Display for ModuleLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.counted())
    }
}

/// What the budget measured of a module: for each bound, the module's figure (for a
/// per-item bound, its largest item). Returned by [`ModuleFigures::measure`] when every
/// figure is within its bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModuleFigures {
    pub size_bytes: u64,
    pub code_bytes: u64,
    pub functions: u64,
    pub function_body_bytes_max: u64,
    pub locals_per_function_max: u64,
    pub locals_total: u64,
    pub types: u64,
    pub exports: u64,
    pub globals: u64,
    pub data_segments: u64,
    pub element_segments: u64,
    pub tables: u64,
    pub table_initial_elements_max: u64,
    pub memories: u64,
    pub memory_initial_bytes_max: u64,
    pub br_table_targets_max: u64,
    pub control_depth_max: u64,
    pub loop_depth_max: u64,
    pub loop_carried_values: u64,
}

impl ModuleFigures {
    /// The figure this module has for `limit`.
    pub fn get(&self, limit: ModuleLimit) -> u64 {
        match limit {
            ModuleLimit::SizeBytes => self.size_bytes,
            ModuleLimit::CodeBytes => self.code_bytes,
            ModuleLimit::Functions => self.functions,
            ModuleLimit::FunctionBodyBytes => self.function_body_bytes_max,
            ModuleLimit::LocalsPerFunction => self.locals_per_function_max,
            ModuleLimit::LocalsTotal => self.locals_total,
            ModuleLimit::Types => self.types,
            ModuleLimit::Exports => self.exports,
            ModuleLimit::Globals => self.globals,
            ModuleLimit::DataSegments => self.data_segments,
            ModuleLimit::ElementSegments => self.element_segments,
            ModuleLimit::Tables => self.tables,
            ModuleLimit::TableInitialElements => self.table_initial_elements_max,
            ModuleLimit::Memories => self.memories,
            ModuleLimit::MemoryInitialBytes => self.memory_initial_bytes_max,
            ModuleLimit::BrTableTargets => self.br_table_targets_max,
            ModuleLimit::ControlDepth => self.control_depth_max,
            ModuleLimit::LoopDepth => self.loop_depth_max,
            ModuleLimit::LoopCarriedValues => self.loop_carried_values,
        }
    }

    /// Reads `bytes` section by section and measures them, failing at the first figure over
    /// its bound (so a module with a million functions is refused from its function section's
    /// header, before its code is read). `module` names the module in errors.
    ///
    /// Refuses, besides the bounds: bytes that are not a core module (`NotWasm`, with
    /// wasmparser's reason), and any import (`Imports`: SmartModules import nothing, and
    /// refusing here saves compiling a module that would be refused after).
    pub fn measure(module: &str, bytes: &[u8]) -> Result<Self, SmartModuleError> {
        check_size(module, bytes)?;
        if !bytes.starts_with(b"\0asm") {
            return Err(SmartModuleError::NotWasm {
                module: module.to_owned(),
                reason: format!(
                    "{} bytes that do not start with the WebAssembly magic number \\0asm",
                    bytes.len()
                ),
            });
        }
        let mut m = Measure {
            figures: Self {
                size_bytes: bytes.len() as u64,
                ..Self::default()
            },
            ..Measure::default()
        };
        let malformed = |e: wasmparser::BinaryReaderError| SmartModuleError::NotWasm {
            module: module.to_owned(),
            reason: e.to_string(),
        };
        for payload in Parser::new(0).parse_all(bytes) {
            m.payload(payload.map_err(malformed)?)
                .map_err(|e| e.into_error(module))?;
        }
        Ok(m.figures)
    }
}

/// Refuses a module larger than `SMARTMODULE_SIZE_BYTES_MAX`: the one check every path
/// (registration, an ad-hoc module of a consumer, a producer's local chain) goes through,
/// because all of them call [`Engine::load`](crate::Engine::load).
pub(crate) fn check_size(module: &str, bytes: &[u8]) -> Result<(), SmartModuleError> {
    note(&mut 0, ModuleLimit::SizeBytes, bytes.len() as u64, None)
        .map_err(|stop| stop.into_error(module))
}

/// A figure over its bound, or a parse error met while measuring.
enum Stop {
    Over(Over),
    Malformed(wasmparser::BinaryReaderError),
    Import(String),
    Component,
}

struct Over {
    limit: ModuleLimit,
    found: u64,
    /// Index of the function (among those the module defines) the figure is about.
    function: Option<u32>,
}

impl From<wasmparser::BinaryReaderError> for Stop {
    fn from(e: wasmparser::BinaryReaderError) -> Self {
        Stop::Malformed(e)
    }
}

impl Stop {
    fn into_error(self, module: &str) -> SmartModuleError {
        let module = module.to_owned();
        match self {
            Stop::Over(o) => SmartModuleError::OverLimit {
                module,
                limit: o.limit,
                found: o.found,
                function: o.function,
            },
            Stop::Malformed(e) => SmartModuleError::NotWasm {
                module,
                reason: e.to_string(),
            },
            Stop::Import(import) => SmartModuleError::Imports { module, import },
            Stop::Component => SmartModuleError::NotWasm {
                module,
                reason: "a WebAssembly component, not a core module".into(),
            },
        }
    }
}

#[derive(Default)]
struct Measure {
    figures: ModuleFigures,
    /// Parameters of each type (0 for a type that is not a function's).
    type_params: Vec<u32>,
    /// Type of each function the module defines.
    function_types: Vec<u32>,
    /// Index of the next function body.
    function: u32,
}

/// Records `found` in `figure` (which keeps the largest value noted: the count of a section,
/// or the largest item so far) and stops if it is over `limit`.
fn note(
    figure: &mut u64,
    limit: ModuleLimit,
    found: u64,
    function: Option<u32>,
) -> Result<(), Stop> {
    *figure = (*figure).max(found);
    if found > limit.max() {
        return Err(Stop::Over(Over {
            limit,
            found,
            function,
        }));
    }
    Ok(())
}

impl Measure {
    /// Measures one section. wasmparser's parser refuses a section out of order or repeated,
    /// so a section's count is the module's.
    fn payload(&mut self, payload: Payload<'_>) -> Result<(), Stop> {
        let f = &mut self.figures;
        match payload {
            Payload::Version { encoding, .. } if encoding != Encoding::Module => {
                return Err(Stop::Component);
            }
            Payload::TypeSection(reader) => {
                // A recursion group may hold several types: count the types, not the groups,
                // after checking the declared group count (each group holds at least one).
                note(
                    &mut f.types,
                    ModuleLimit::Types,
                    reader.count().into(),
                    None,
                )?;
                for group in reader {
                    for ty in group?.types() {
                        self.type_params.push(match &ty.composite_type.inner {
                            CompositeInnerType::Func(func) => func.params().len() as u32,
                            _ => 0,
                        });
                    }
                    note(
                        &mut f.types,
                        ModuleLimit::Types,
                        self.type_params.len() as u64,
                        None,
                    )?;
                }
            }
            Payload::ImportSection(reader) => {
                if let Some(import) = reader.into_imports().next() {
                    let import = import?;
                    return Err(Stop::Import(format!("{}::{}", import.module, import.name)));
                }
            }
            Payload::FunctionSection(reader) => {
                note(
                    &mut f.functions,
                    ModuleLimit::Functions,
                    reader.count().into(),
                    None,
                )?;
                for ty in reader {
                    self.function_types.push(ty?);
                }
            }
            Payload::TableSection(reader) => {
                note(
                    &mut f.tables,
                    ModuleLimit::Tables,
                    reader.count().into(),
                    None,
                )?;
                for table in reader {
                    let initial = table?.ty.initial;
                    note(
                        &mut f.table_initial_elements_max,
                        ModuleLimit::TableInitialElements,
                        initial,
                        None,
                    )?;
                }
            }
            Payload::MemorySection(reader) => {
                note(
                    &mut f.memories,
                    ModuleLimit::Memories,
                    reader.count().into(),
                    None,
                )?;
                for memory in reader {
                    let memory = memory?;
                    // The page size is 64 KiB unless the module picks another (custom page
                    // sizes); its log2 is not bounded by parsing, hence the checked shift.
                    let page = 1u64
                        .checked_shl(memory.page_size_log2())
                        .unwrap_or(u64::MAX);
                    let bytes = memory.initial.saturating_mul(page);
                    note(
                        &mut f.memory_initial_bytes_max,
                        ModuleLimit::MemoryInitialBytes,
                        bytes,
                        None,
                    )?;
                }
            }
            Payload::GlobalSection(reader) => {
                note(
                    &mut f.globals,
                    ModuleLimit::Globals,
                    reader.count().into(),
                    None,
                )?;
            }
            Payload::ExportSection(reader) => {
                note(
                    &mut f.exports,
                    ModuleLimit::Exports,
                    reader.count().into(),
                    None,
                )?;
            }
            Payload::ElementSection(reader) => {
                note(
                    &mut f.element_segments,
                    ModuleLimit::ElementSegments,
                    reader.count().into(),
                    None,
                )?;
            }
            Payload::DataSection(reader) => {
                note(
                    &mut f.data_segments,
                    ModuleLimit::DataSegments,
                    reader.count().into(),
                    None,
                )?;
            }
            Payload::CodeSectionStart { count, size, .. } => {
                note(&mut f.code_bytes, ModuleLimit::CodeBytes, size.into(), None)?;
                // Normally equal to the function section's count (validation checks it later);
                // checked here too so that a module cannot skip the function section's bound.
                note(&mut f.functions, ModuleLimit::Functions, count.into(), None)?;
            }
            Payload::CodeSectionEntry(body) => self.function_body(&body)?,
            _ => {}
        }
        Ok(())
    }

    fn function_body(&mut self, body: &FunctionBody<'_>) -> Result<(), Stop> {
        let index = self.function;
        self.function = self.function.saturating_add(1);
        let function = Some(index);
        let f = &mut self.figures;
        note(
            &mut f.function_body_bytes_max,
            ModuleLimit::FunctionBodyBytes,
            body.range().len() as u64,
            function,
        )?;
        // Parameters are locals to the compiler too. An index out of range is malformed, which
        // wasmtime's validation reports; here it counts no parameters.
        let params = self
            .function_types
            .get(index as usize)
            .and_then(|ty| self.type_params.get(*ty as usize))
            .copied()
            .unwrap_or(0);
        // Summed in u64: each declaration's count is a u32, and their sum may not fit.
        let mut locals = u64::from(params);
        note(
            &mut f.locals_per_function_max,
            ModuleLimit::LocalsPerFunction,
            locals,
            function,
        )?;
        let mut declared = 0u64;
        // Read by hand rather than with wasmparser's locals reader, which fails on a u32
        // overflow of the sum with a parse error rather than this bound's.
        let mut reader = body.get_binary_reader();
        for _ in 0..reader.read_var_u32()? {
            let count = reader.read_var_u32()?;
            reader.read::<ValType>()?;
            locals += u64::from(count);
            declared += u64::from(count);
            note(
                &mut f.locals_per_function_max,
                ModuleLimit::LocalsPerFunction,
                locals,
                function,
            )?;
        }
        let total = f.locals_total + declared;
        note(
            &mut f.locals_total,
            ModuleLimit::LocalsTotal,
            total,
            function,
        )?;
        // Nesting: one entry per open block, `true` for a loop. The function's own frame is
        // not on it, so its final `end` finds it empty.
        let mut open: Vec<bool> = Vec::new();
        let mut loops = 0u64;
        let mut operators = body.get_operators_reader()?;
        while !operators.eof() {
            match operators.read()? {
                Operator::Block { .. }
                | Operator::If { .. }
                | Operator::Try { .. }
                | Operator::TryTable { .. } => open.push(false),
                Operator::Loop { blockty } => {
                    open.push(true);
                    loops += 1;
                    note(
                        &mut f.loop_depth_max,
                        ModuleLimit::LoopDepth,
                        loops,
                        function,
                    )?;
                    // A loop's parameters are values its header carries, like locals.
                    if let BlockType::FuncType(ty) = blockty {
                        let params = self.type_params.get(ty as usize).copied().unwrap_or(0);
                        let carried = f.loop_carried_values + u64::from(params) * loops;
                        note(
                            &mut f.loop_carried_values,
                            ModuleLimit::LoopCarriedValues,
                            carried,
                            function,
                        )?;
                    }
                }
                Operator::End | Operator::Delegate { .. } => {
                    loops -= u64::from(open.pop() == Some(true));
                }
                Operator::LocalGet { .. }
                | Operator::LocalSet { .. }
                | Operator::LocalTee { .. }
                    if loops > 0 =>
                {
                    let carried = f.loop_carried_values + loops;
                    note(
                        &mut f.loop_carried_values,
                        ModuleLimit::LoopCarriedValues,
                        carried,
                        function,
                    )?;
                }
                Operator::BrTable { targets } => {
                    note(
                        &mut f.br_table_targets_max,
                        ModuleLimit::BrTableTargets,
                        targets.len().into(),
                        function,
                    )?;
                }
                _ => {}
            }
            note(
                &mut f.control_depth_max,
                ModuleLimit::ControlDepth,
                open.len() as u64,
                function,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testwasm::{I32, TYPE_VOID, WasmBuilder, op};

    /// Measures `bytes`, expecting a refusal for `limit`; returns the error.
    fn refused(bytes: &[u8], limit: ModuleLimit) -> SmartModuleError {
        let err = ModuleFigures::measure("hostile", bytes).unwrap_err();
        match &err {
            SmartModuleError::OverLimit { limit: found, .. } if *found == limit => {}
            other => panic!("expected a refusal for {limit:?}, got {other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.contains(limit.constant()) && message.contains("hostile"),
            "names the module and the bound: {message}"
        );
        err
    }

    /// `count` nested loops around `inner`.
    fn nested_loops(count: u32, inner: &[u8]) -> Vec<u8> {
        let mut code = Vec::new();
        for _ in 0..count {
            code.extend_from_slice(&op::LOOP);
        }
        code.extend_from_slice(inner);
        code.extend(std::iter::repeat_n(op::END, count as usize));
        code
    }

    /// Increments each of locals `0..count` once.
    fn touch_locals(count: u32) -> Vec<u8> {
        let mut code = Vec::new();
        for i in 0..count {
            op::local_get(i, &mut code);
            op::i32_const(1, &mut code);
            code.push(op::I32_ADD);
            op::local_set(i, &mut code);
        }
        code
    }

    #[test]
    fn a_plain_smartmodule_is_measured() {
        let mut b = WasmBuilder::smartmodule(0);
        let f = b.function(
            TYPE_VOID,
            &[(3, I32), (2, I32)],
            nested_loops(2, &touch_locals(5)),
        );
        b.export("extra", f);
        let figures = ModuleFigures::measure("plain", &b.encode()).unwrap();
        assert_eq!(figures.functions, 5);
        assert_eq!(figures.exports, 6);
        assert_eq!(figures.memories, 1);
        assert_eq!(figures.memory_initial_bytes_max, 65_536);
        assert_eq!(figures.locals_per_function_max, 5);
        // The ABI's two-parameter functions count their parameters as locals.
        assert_eq!(figures.locals_total, 5);
        assert_eq!(figures.loop_depth_max, 2);
        assert_eq!(figures.control_depth_max, 2);
        // Ten accesses (a get and a set per local), each inside two loops.
        assert_eq!(figures.loop_carried_values, 20);
        for limit in ModuleLimit::ALL {
            assert!(figures.get(limit) <= limit.max(), "{limit:?}");
        }
    }

    #[test]
    fn fuzz_modules_measured_before_compiling() {
        // The pre-compile pass reads every module a peer registers or sends
        // ad hoc; no module may make it panic or take long.
        let mut plain = WasmBuilder::smartmodule(0);
        let f = plain.function(
            TYPE_VOID,
            &[(3, I32), (2, I32)],
            nested_loops(3, &touch_locals(5)),
        );
        plain.export("extra", f);
        let mut tabled = WasmBuilder::smartmodule(1);
        tabled.table(10);
        tabled.import("env", "host");
        let seeds = vec![plain.encode(), tabled.encode()];
        sluice_fuzzing::run("wasm::ModuleFigures", &seeds, |bytes| {
            let _ = ModuleFigures::measure("fuzzed", bytes);
        });
    }

    #[test]
    fn a_module_over_the_size_limit_is_refused_before_it_is_read() {
        let mut b = WasmBuilder::smartmodule(0);
        b.padding(l::SMARTMODULE_SIZE_BYTES_MAX);
        let err = refused(&b.encode(), ModuleLimit::SizeBytes);
        assert!(err.to_string().contains("8388608"), "{err}");
    }

    #[test]
    fn too_many_functions() {
        let mut b = WasmBuilder::smartmodule(0);
        for _ in 0..l::SMARTMODULE_FUNCTIONS_MAX {
            b.function(TYPE_VOID, &[], Vec::new());
        }
        refused(&b.encode(), ModuleLimit::Functions);
    }

    /// The classic compile bomb: one function with 50,000 locals (wasmparser's own maximum),
    /// 6,000 of them live through nested loops (a module of about 60 KiB).
    #[test]
    fn the_locals_bomb_is_refused_and_names_its_function() {
        let mut b = WasmBuilder::smartmodule(0);
        b.function(
            TYPE_VOID,
            &[(50_000, I32)],
            nested_loops(8, &touch_locals(6_000)),
        );
        let err = refused(&b.encode(), ModuleLimit::LocalsPerFunction);
        assert!(
            matches!(
                err,
                SmartModuleError::OverLimit {
                    function: Some(4),
                    found: 50_000,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("(function 4)"), "{err}");
    }

    #[test]
    fn locals_are_summed_without_overflow() {
        let mut b = WasmBuilder::smartmodule(0);
        b.function(TYPE_VOID, &[(1_000, I32), (u32::MAX, I32)], Vec::new());
        let err = refused(&b.encode(), ModuleLimit::LocalsPerFunction);
        let want = 1_000 + u64::from(u32::MAX);
        assert!(
            matches!(err, SmartModuleError::OverLimit { found, .. } if found == want),
            "{err:?}"
        );
    }

    #[test]
    fn parameters_count_as_locals() {
        let mut b = WasmBuilder::smartmodule(0);
        let ty = b.type_with_params(1_000);
        let locals = l::SMARTMODULE_LOCALS_PER_FUNCTION_MAX - 1_000;
        b.function(ty, &[(locals, I32)], Vec::new());
        ModuleFigures::measure("fits", &b.encode()).unwrap();
        let mut b = WasmBuilder::smartmodule(0);
        let ty = b.type_with_params(1_000);
        b.function(ty, &[(locals + 1, I32)], Vec::new());
        refused(&b.encode(), ModuleLimit::LocalsPerFunction);
    }

    #[test]
    fn too_many_locals_in_all() {
        let mut b = WasmBuilder::smartmodule(0);
        let per = l::SMARTMODULE_LOCALS_PER_FUNCTION_MAX;
        for _ in 0..=l::SMARTMODULE_LOCALS_TOTAL_MAX / per {
            b.function(TYPE_VOID, &[(per, I32)], Vec::new());
        }
        refused(&b.encode(), ModuleLimit::LocalsTotal);
    }

    /// Straight-line code of about `bytes` bytes.
    fn straight(bytes: usize) -> Vec<u8> {
        let mut code = Vec::with_capacity(bytes + 8);
        while code.len() < bytes {
            code.extend_from_slice(&touch_locals(1));
        }
        code
    }

    #[test]
    fn a_function_body_too_large() {
        let mut b = WasmBuilder::smartmodule(0);
        b.function(
            TYPE_VOID,
            &[(1, I32)],
            straight(l::SMARTMODULE_FUNCTION_BODY_BYTES_MAX),
        );
        refused(&b.encode(), ModuleLimit::FunctionBodyBytes);
    }

    #[test]
    fn too_much_code() {
        let mut b = WasmBuilder::smartmodule(0);
        let body = straight(l::SMARTMODULE_FUNCTION_BODY_BYTES_MAX - 64);
        for _ in 0..=l::SMARTMODULE_CODE_BYTES_MAX / body.len() {
            b.function(TYPE_VOID, &[(1, I32)], body.clone());
        }
        refused(&b.encode(), ModuleLimit::CodeBytes);
    }

    #[test]
    fn too_many_types_exports_globals_and_segments() {
        let mut b = WasmBuilder::smartmodule(0);
        b.types(l::SMARTMODULE_TYPES_MAX as usize);
        refused(&b.encode(), ModuleLimit::Types);

        let mut b = WasmBuilder::smartmodule(0);
        for i in 0..l::SMARTMODULE_EXPORTS_MAX {
            b.export(&format!("e{i}"), 0);
        }
        refused(&b.encode(), ModuleLimit::Exports);

        let mut b = WasmBuilder::smartmodule(0);
        b.globals(l::SMARTMODULE_GLOBALS_MAX + 1);
        refused(&b.encode(), ModuleLimit::Globals);

        let mut b = WasmBuilder::smartmodule(0);
        for _ in 0..=l::SMARTMODULE_DATA_SEGMENTS_MAX {
            b.data(b"x");
        }
        refused(&b.encode(), ModuleLimit::DataSegments);

        let mut b = WasmBuilder::smartmodule(0);
        b.elements(l::SMARTMODULE_ELEMENT_SEGMENTS_MAX + 1);
        refused(&b.encode(), ModuleLimit::ElementSegments);
    }

    #[test]
    fn tables_and_memories_too_many_or_too_large() {
        let mut b = WasmBuilder::smartmodule(0);
        for _ in 0..=l::SMARTMODULE_TABLES_MAX {
            b.table(1);
        }
        refused(&b.encode(), ModuleLimit::Tables);

        let mut b = WasmBuilder::smartmodule(0);
        b.table(l::SMARTMODULE_TABLE_INITIAL_ELEMENTS_MAX as u32 + 1);
        refused(&b.encode(), ModuleLimit::TableInitialElements);

        let mut b = WasmBuilder::smartmodule(0);
        b.memory(1);
        refused(&b.encode(), ModuleLimit::Memories);

        let pages = (l::SMARTMODULE_MEMORY_INITIAL_BYTES_MAX / 65_536) as u32;
        let mut b = WasmBuilder::smartmodule(0);
        b.set_memory(pages);
        ModuleFigures::measure("fits", &b.encode()).unwrap();
        b.set_memory(pages + 1);
        refused(&b.encode(), ModuleLimit::MemoryInitialBytes);
    }

    #[test]
    fn a_br_table_with_too_many_targets() {
        let mut b = WasmBuilder::smartmodule(0);
        let mut code = op::BLOCK.to_vec();
        op::i32_const(0, &mut code);
        let targets = vec![0; l::SMARTMODULE_BR_TABLE_TARGETS_MAX as usize + 1];
        op::br_table(&targets, 0, &mut code);
        code.push(op::END);
        b.function(TYPE_VOID, &[], code);
        refused(&b.encode(), ModuleLimit::BrTableTargets);
    }

    #[test]
    fn blocks_and_loops_nested_too_deep() {
        let mut b = WasmBuilder::smartmodule(0);
        let mut code = Vec::new();
        for _ in 0..=l::SMARTMODULE_CONTROL_DEPTH_MAX {
            code.extend_from_slice(&op::BLOCK);
        }
        code.extend(std::iter::repeat_n(
            op::END,
            l::SMARTMODULE_CONTROL_DEPTH_MAX as usize + 1,
        ));
        b.function(TYPE_VOID, &[], code);
        refused(&b.encode(), ModuleLimit::ControlDepth);

        let mut b = WasmBuilder::smartmodule(0);
        b.function(
            TYPE_VOID,
            &[],
            nested_loops(l::SMARTMODULE_LOOP_DEPTH_MAX, &[]),
        );
        ModuleFigures::measure("fits", &b.encode()).unwrap();
        let mut b = WasmBuilder::smartmodule(0);
        b.function(
            TYPE_VOID,
            &[],
            nested_loops(l::SMARTMODULE_LOOP_DEPTH_MAX + 1, &[]),
        );
        refused(&b.encode(), ModuleLimit::LoopDepth);
        // Loops one after the other are not nested.
        let mut b = WasmBuilder::smartmodule(0);
        let code = nested_loops(1, &[]).repeat(100);
        b.function(TYPE_VOID, &[], code);
        let figures = ModuleFigures::measure("fits", &b.encode()).unwrap();
        assert_eq!(figures.loop_depth_max, 1);
    }

    #[test]
    fn too_many_values_carried_through_loops() {
        // Each function: 1,000 locals, each read and written under 16 loops.
        let (locals, depth) = (1_000, l::SMARTMODULE_LOOP_DEPTH_MAX);
        let per_function = u64::from(2 * locals * depth);
        let code = nested_loops(depth, &touch_locals(locals));
        let mut b = WasmBuilder::smartmodule(0);
        for _ in 0..=l::SMARTMODULE_LOOP_CARRIED_VALUES_MAX / per_function {
            b.function(TYPE_VOID, &[(locals, I32)], code.clone());
        }
        refused(&b.encode(), ModuleLimit::LoopCarriedValues);

        // Loop parameters count too: 1,000 values handed from loop to nested loop, no local
        // touched. 1,000 x (1 + 2 + ... + 16) = 136,000 per function.
        let mut b = WasmBuilder::smartmodule(0);
        let ty = b.type_with_params(1_000);
        let mut code = Vec::new();
        for _ in 0..1_000 {
            op::i32_const(7, &mut code);
        }
        for _ in 0..depth {
            code.extend_from_slice(&[0x03, ty as u8]);
        }
        code.extend(std::iter::repeat_n(op::DROP, 1_000));
        code.extend(std::iter::repeat_n(op::END, depth as usize));
        b.function(TYPE_VOID, &[], code.clone());
        let figures = ModuleFigures::measure("fits", &b.encode()).unwrap();
        assert_eq!(figures.loop_carried_values, 136_000);
        b.function(TYPE_VOID, &[], code);
        refused(&b.encode(), ModuleLimit::LoopCarriedValues);
    }

    #[test]
    fn imports_components_and_garbage_are_refused_as_such() {
        let mut b = WasmBuilder::smartmodule(0);
        b.import("env", "host_call");
        let err = ModuleFigures::measure("m", &b.encode()).unwrap_err();
        assert_eq!(
            err,
            SmartModuleError::Imports {
                module: "m".into(),
                import: "env::host_call".into()
            }
        );
        // A module of Fluvio's SDK, or a WASI build, says so.
        for (module, field, hint) in [
            ("env", "copy_records", "built with Fluvio's SDK"),
            ("wasi_snapshot_preview1", "fd_write", "built for WASI"),
        ] {
            let mut b = WasmBuilder::smartmodule(0);
            b.import(module, field);
            let err = ModuleFigures::measure("m", &b.encode())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(hint) && err.contains("wasm32-unknown-unknown"),
                "{err}"
            );
        }
        let component = b"\0asm\x0d\0\x01\0";
        let err = ModuleFigures::measure("m", component).unwrap_err();
        assert!(matches!(err, SmartModuleError::NotWasm { .. }), "{err:?}");
        let mut truncated = WasmBuilder::smartmodule(0).encode();
        truncated.truncate(truncated.len() - 3);
        let err = ModuleFigures::measure("m", &truncated).unwrap_err();
        assert!(matches!(err, SmartModuleError::NotWasm { .. }), "{err:?}");
        let err = ModuleFigures::measure("m", b"#!/bin/sh").unwrap_err();
        assert!(err.to_string().contains("magic number"), "{err}");
    }

    /// Calibration of the bounds, run by hand on a quiet machine after changing one of them
    /// or upgrading wasmtime: `cargo test -p sluice-wasm --lib -- --ignored --nocapture
    /// the_worst_module`. Builds the module that costs Cranelift the most among those found
    /// that the budget admits: every loop-carried value in functions of the most locals under
    /// the deepest loops, the rest of the locals, then the rest of the code as chains of
    /// `x + 1` (the costliest code per byte found, through Cranelift's e-graph optimizer:
    /// about 6 us per byte, against 2 for the examples' code) in functions of the largest
    /// body, and compiles it on this thread. Fails if that takes more CPU than the engine's
    /// default time budget. Measured on the 2-core development machine (test profile, whose
    /// Cranelift is built at opt-level 2): 5.5 s of CPU, about 100 MB.
    #[test]
    #[ignore = "calibration: seconds of CPU"]
    fn the_worst_module_within_every_bound_compiles_within_the_time_budget() {
        let (locals, depth) = (
            l::SMARTMODULE_LOCALS_PER_FUNCTION_MAX,
            l::SMARTMODULE_LOOP_DEPTH_MAX,
        );
        let mut inner = touch_locals(locals);
        for _ in 0..depth {
            op::local_get(0, &mut inner);
            op::br_if(0, &mut inner);
        }
        let nested = nested_loops(depth, &inner);
        let per_function = u64::from(2 * locals * depth + depth * depth);
        let mut b = WasmBuilder::smartmodule(0);
        let functions = l::SMARTMODULE_LOOP_CARRIED_VALUES_MAX / per_function;
        for _ in 0..functions {
            b.function(TYPE_VOID, &[(locals, I32)], nested.clone());
        }
        let mut declared = functions * u64::from(locals);
        while declared + u64::from(locals) <= u64::from(l::SMARTMODULE_LOCALS_TOTAL_MAX) {
            b.function(TYPE_VOID, &[(locals, I32)], Vec::new());
            declared += u64::from(locals);
        }
        // `x + 1 + 1 + ...` on the parameter of `(i32) -> i32` (type 1), so that nothing
        // folds to a constant, and no local is declared.
        let mut chain = Vec::new();
        op::local_get(0, &mut chain);
        while chain.len() < l::SMARTMODULE_FUNCTION_BODY_BYTES_MAX - 64 {
            op::i32_const(1, &mut chain);
            chain.push(op::I32_ADD);
        }
        let room = l::SMARTMODULE_CODE_BYTES_MAX - b.encode().len() - 1024;
        for _ in 0..room / (chain.len() + 8) {
            b.function(1, &[], chain.clone());
        }
        let bytes = b.encode();
        let figures = ModuleFigures::measure("worst", &bytes).unwrap();
        let config = crate::EngineConfig::default();
        let engine = crate::Engine::new(config.clone()).unwrap();
        // CPU time of this thread, in ns (Linux).
        let cpu = || -> u64 {
            let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
            stat.split_whitespace().next().unwrap().parse().unwrap()
        };
        let (cpu_before, started) = (cpu(), std::time::Instant::now());
        crate::module::Compiled::compile(&engine, [0; 32], &bytes).unwrap();
        let (took, cpu_ms) = (started.elapsed(), (cpu() - cpu_before) / 1_000_000);
        eprintln!("{figures:#?}\ncompiled in {took:?}, {cpu_ms} ms of CPU");
        // CPU rather than wall-clock time, so that the verdict does not depend on what else
        // the machine runs: on a busy one the wait can overrun the budget (the module is then
        // refused once and cached when its compile ends).
        assert!(
            u128::from(cpu_ms) < config.compile_time_max.as_millis(),
            "{cpu_ms} ms of CPU"
        );
    }
}
