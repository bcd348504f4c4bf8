//! Several instances applied in order: the outputs of one are the inputs of the next.

use crate::{Instance, Processed, Record, SmartModuleError};

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
        let mut current = records.to_vec();
        let mut error = None;
        for instance in &mut self.instances {
            let p = instance.process_partial(&current);
            current = p.outputs;
            if p.error.is_some() {
                error = p.error;
            }
        }
        Processed {
            outputs: current,
            error,
        }
    }
}
