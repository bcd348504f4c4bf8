//! Test-only: WebAssembly modules written byte by byte, to build hostile modules in memory
//! (the crate has no text-format parser among its dependencies).

/// A valid SmartModule (a filter that keeps nothing) to which tests add functions, locals,
/// sections... `salt` changes its bytes (and so its hash) without changing its shape.
pub(crate) struct WasmBuilder {
    types: Vec<Vec<u8>>,
    imports: Vec<(String, String, u32)>,
    functions: Vec<Function>,
    tables: Vec<u32>,
    memories: Vec<u32>,
    globals: u32,
    elements: u32,
    exports: Vec<(String, u8, u32)>,
    data: Vec<Vec<u8>>,
    custom: Vec<u8>,
}

struct Function {
    ty: u32,
    /// (count, value type) declarations, encoded as written.
    locals: Vec<(u32, u8)>,
    /// Instructions, without the final `end`.
    code: Vec<u8>,
}

pub(crate) const I32: u8 = 0x7f;
pub(crate) const I64: u8 = 0x7e;
const FUNC: u8 = 0x00;
const MEMORY: u8 = 0x02;

/// Type indices of the SmartModule's own functions.
pub(crate) const TYPE_VOID: u32 = 4;

pub(crate) fn uleb(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

pub(crate) fn sleb(mut v: i64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        let done = (v == 0 && byte & 0x40 == 0) || (v == -1 && byte & 0x40 != 0);
        if done {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn name(s: &str, out: &mut Vec<u8>) {
    uleb(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

fn section(id: u8, count: usize, items: &[u8], out: &mut Vec<u8>) {
    let mut body = Vec::new();
    uleb(count as u64, &mut body);
    body.extend_from_slice(items);
    out.push(id);
    uleb(body.len() as u64, out);
    out.extend_from_slice(&body);
}

/// Instructions of a body.
pub(crate) mod op {
    use super::{sleb, uleb};

    pub(crate) fn local_get(i: u32, out: &mut Vec<u8>) {
        out.push(0x20);
        uleb(i.into(), out);
    }
    pub(crate) fn local_set(i: u32, out: &mut Vec<u8>) {
        out.push(0x21);
        uleb(i.into(), out);
    }
    pub(crate) fn i32_const(v: i32, out: &mut Vec<u8>) {
        out.push(0x41);
        sleb(v.into(), out);
    }
    pub(crate) fn i64_const(v: i64, out: &mut Vec<u8>) {
        out.push(0x42);
        sleb(v, out);
    }
    pub(crate) const I32_ADD: u8 = 0x6a;
    pub(crate) const DROP: u8 = 0x1a;
    pub(crate) const END: u8 = 0x0b;
    /// `block` / `loop` with no result.
    pub(crate) const BLOCK: [u8; 2] = [0x02, 0x40];
    pub(crate) const LOOP: [u8; 2] = [0x03, 0x40];
    pub(crate) fn br_if(depth: u32, out: &mut Vec<u8>) {
        out.push(0x0d);
        uleb(depth.into(), out);
    }
    pub(crate) fn br_table(targets: &[u32], default: u32, out: &mut Vec<u8>) {
        out.push(0x0e);
        uleb(targets.len() as u64, out);
        for t in targets {
            uleb((*t).into(), out);
        }
        uleb(default.into(), out);
    }
}

impl WasmBuilder {
    /// The smallest valid SmartModule: one page of memory, the ABI exports and a filter.
    pub(crate) fn smartmodule(salt: u64) -> Self {
        let mut b = Self {
            types: vec![
                vec![0x60, 0, 1, I32],           // 0: () -> i32
                vec![0x60, 1, I32, 1, I32],      // 1: (i32) -> i32
                vec![0x60, 2, I32, I32, 0],      // 2: (i32, i32)
                vec![0x60, 2, I32, I32, 1, I64], // 3: (i32, i32) -> i64
                vec![0x60, 0, 0],                // 4: ()
            ],
            imports: Vec::new(),
            functions: Vec::new(),
            tables: Vec::new(),
            memories: vec![1],
            globals: 0,
            elements: 0,
            exports: vec![("memory".into(), MEMORY, 0)],
            data: Vec::new(),
            custom: Vec::new(),
        };
        let mut version = Vec::new();
        op::i32_const(crate::ABI_VERSION as i32, &mut version);
        let f = b.function(0, &[], version);
        b.export("sluice_abi_version", f);
        let mut alloc = Vec::new();
        op::i32_const(1024, &mut alloc);
        let f = b.function(1, &[], alloc);
        b.export("sluice_alloc", f);
        let f = b.function(2, &[], Vec::new());
        b.export("sluice_dealloc", f);
        let mut filter = Vec::new();
        op::i64_const(salt as i64, &mut filter);
        let f = b.function(3, &[], filter);
        b.export("sluice_filter", f);
        b
    }

    /// Adds a function of type `ty`; returns its index.
    pub(crate) fn function(&mut self, ty: u32, locals: &[(u32, u8)], code: Vec<u8>) -> u32 {
        self.functions.push(Function {
            ty,
            locals: locals.to_vec(),
            code,
        });
        (self.imports.len() + self.functions.len() - 1) as u32
    }

    pub(crate) fn export(&mut self, name: &str, function: u32) {
        self.exports.push((name.into(), FUNC, function));
    }

    /// Adds an import of a `() -> ()` function (the indices of functions added before it are
    /// off by one after it: only for modules that must be refused).
    pub(crate) fn import(&mut self, module: &str, name: &str) {
        self.imports.push((module.into(), name.into(), TYPE_VOID));
    }

    pub(crate) fn table(&mut self, initial: u32) {
        self.tables.push(initial);
    }

    pub(crate) fn memory(&mut self, initial_pages: u32) {
        self.memories.push(initial_pages);
    }

    pub(crate) fn set_memory(&mut self, initial_pages: u32) {
        self.memories = vec![initial_pages];
    }

    pub(crate) fn globals(&mut self, count: u32) {
        self.globals = count;
    }

    /// `count` element segments, each putting function 0 in table 0 (adds a table if none).
    pub(crate) fn elements(&mut self, count: u32) {
        if self.tables.is_empty() {
            self.tables.push(1);
        }
        self.elements = count;
    }

    pub(crate) fn data(&mut self, bytes: &[u8]) {
        self.data.push(bytes.to_vec());
    }

    /// A custom section of `len` bytes (ignored by compilers: only makes the module larger).
    pub(crate) fn padding(&mut self, len: usize) {
        self.custom = vec![0; len];
    }

    /// Adds a type of `params` i32 parameters and no result; returns its index.
    pub(crate) fn type_with_params(&mut self, params: u32) -> u32 {
        let mut ty = vec![0x60];
        uleb(params.into(), &mut ty);
        ty.extend(std::iter::repeat_n(I32, params as usize));
        ty.push(0);
        self.types.push(ty);
        (self.types.len() - 1) as u32
    }

    pub(crate) fn types(&mut self, extra: usize) {
        for _ in 0..extra {
            self.types.push(vec![0x60, 0, 0]);
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = b"\0asm\x01\0\0\0".to_vec();
        section(1, self.types.len(), &self.types.concat(), &mut out);
        if !self.imports.is_empty() {
            let mut items = Vec::new();
            for (module, field, ty) in &self.imports {
                name(module, &mut items);
                name(field, &mut items);
                items.push(FUNC);
                uleb((*ty).into(), &mut items);
            }
            section(2, self.imports.len(), &items, &mut out);
        }
        let mut items = Vec::new();
        for f in &self.functions {
            uleb(f.ty.into(), &mut items);
        }
        section(3, self.functions.len(), &items, &mut out);
        if !self.tables.is_empty() {
            let mut items = Vec::new();
            for initial in &self.tables {
                items.extend_from_slice(&[0x70, 0x00]); // funcref, no maximum
                uleb((*initial).into(), &mut items);
            }
            section(4, self.tables.len(), &items, &mut out);
        }
        let mut items = Vec::new();
        for pages in &self.memories {
            items.push(0x00); // no maximum
            uleb((*pages).into(), &mut items);
        }
        section(5, self.memories.len(), &items, &mut out);
        if self.globals > 0 {
            let mut items = Vec::new();
            for _ in 0..self.globals {
                items.extend_from_slice(&[I32, 0x00]); // immutable i32
                op::i32_const(0, &mut items);
                items.push(op::END);
            }
            section(6, self.globals as usize, &items, &mut out);
        }
        let mut items = Vec::new();
        for (export, kind, index) in &self.exports {
            name(export, &mut items);
            items.push(*kind);
            uleb((*index).into(), &mut items);
        }
        section(7, self.exports.len(), &items, &mut out);
        if self.elements > 0 {
            let mut items = Vec::new();
            for _ in 0..self.elements {
                items.push(0x00); // active, table 0, offset expression, function indices
                op::i32_const(0, &mut items);
                items.push(op::END);
                items.extend_from_slice(&[1, 0]);
            }
            section(9, self.elements as usize, &items, &mut out);
        }
        let mut items = Vec::new();
        for f in &self.functions {
            let mut body = Vec::new();
            uleb(f.locals.len() as u64, &mut body);
            for (count, ty) in &f.locals {
                uleb((*count).into(), &mut body);
                body.push(*ty);
            }
            body.extend_from_slice(&f.code);
            body.push(op::END);
            uleb(body.len() as u64, &mut items);
            items.extend_from_slice(&body);
        }
        section(10, self.functions.len(), &items, &mut out);
        if !self.data.is_empty() {
            let mut items = Vec::new();
            for bytes in &self.data {
                items.push(0x00); // active, memory 0
                op::i32_const(0, &mut items);
                items.push(op::END);
                uleb(bytes.len() as u64, &mut items);
                items.extend_from_slice(bytes);
            }
            section(11, self.data.len(), &items, &mut out);
        }
        if !self.custom.is_empty() {
            let mut body = Vec::new();
            name("padding", &mut body);
            body.extend_from_slice(&self.custom);
            out.push(0);
            uleb(body.len() as u64, &mut out);
            out.extend_from_slice(&body);
        }
        out
    }
}
