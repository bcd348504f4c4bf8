//! Several instances applied in order: the outputs of one are the inputs of the next.

use crate::{Instance, Processed, Record, SmartModuleError};
use sluice_smartmodule::abi::RawRecord;

/// A sequence of instances, as given by repeated flags or a transforms file.
pub struct Chain {
    instances: Vec<Instance>,
}

impl Chain {
    /// A chain applying `instances` in order (an empty chain passes records through).
    pub fn new(instances: Vec<Instance>) -> Self {
        Self { instances }
    }

    /// The instances, in order.
    pub fn instances(&self) -> &[Instance] {
        &self.instances
    }

    /// Whether any module of the chain has a `look_back` function.
    pub fn has_look_back(&self) -> bool {
        self.instances.iter().any(|i| i.module().has_look_back())
    }

    /// Shows `records` (the partition's, as stored) to the `look_back` of
    /// every module that has one, in chain order; the first error stops it.
    /// Each module sees the partition's own records, not what the modules
    /// before it would make of them: looking back rebuilds what a module
    /// keeps about the topic.
    pub fn look_back_raw(&mut self, records: &[RawRecord<'_>]) -> Result<(), SmartModuleError> {
        for instance in &mut self.instances {
            instance.look_back(records)?;
        }
        Ok(())
    }

    /// Runs a batch through every instance.
    pub fn process(&mut self, records: &[Record]) -> Result<Vec<Record>, SmartModuleError> {
        let p = self.process_partial(records);
        match p.error {
            None => Ok(p.outputs),
            Some(e) => Err(e),
        }
    }

    /// Runs a batch through every instance, keeping what came out before a failure. When a
    /// module fails, the outputs it produced before the failing record still go through the
    /// rest of the chain; the error returned is the last one met, since it is the one that
    /// cut the output shortest.
    pub fn process_partial(&mut self, records: &[Record]) -> Processed {
        let raw: Vec<RawRecord<'_>> = records.iter().map(Record::raw).collect();
        self.process_raw(&raw)
    }

    /// [`Chain::process_partial`] over borrowed records: the first module
    /// reads them where they lie; only outputs are owned.
    pub fn process_raw(&mut self, records: &[RawRecord<'_>]) -> Processed {
        let Some((first, rest)) = self.instances.split_first_mut() else {
            return Processed {
                outputs: records.iter().map(Record::from_raw).collect(),
                error: None,
            };
        };
        let Processed {
            mut outputs,
            mut error,
        } = first.process_raw(records);
        for instance in rest {
            let p = instance.process_partial(&outputs);
            outputs = p.outputs;
            if p.error.is_some() {
                error = p.error;
            }
        }
        Processed { outputs, error }
    }
}
