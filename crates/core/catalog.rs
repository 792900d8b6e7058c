//! The builtin stage kinds this binary knows, and their view for the spec (validation and the
//! JSON Schema).

use sluice_spec::{KindInfo, KindOutput, Kinds, WithError};
use sluice_stage::Catalog;

/// Every builtin stage kind.
pub fn catalog() -> Catalog {
    let mut catalog = Catalog::new();
    for kind in sluice_data::kinds()
        .into_iter()
        .chain(sluice_model::kinds())
    {
        catalog.add(kind);
    }
    catalog
}

/// The catalog as the spec sees it.
pub struct CatalogKinds<'a>(pub &'a Catalog);

impl Kinds for CatalogKinds<'_> {
    fn kinds(&self) -> Vec<KindInfo> {
        self.0
            .kinds()
            .map(|k| KindInfo {
                name: k.name().to_owned(),
                description: k.description().to_owned(),
                outputs: k
                    .outputs()
                    .into_iter()
                    .map(|o| KindOutput {
                        name: o.name.to_owned(),
                        file: o.file.to_owned(),
                        description: o.description.to_owned(),
                    })
                    .collect(),
                schema: k.schema(),
            })
            .collect()
    }

    fn check(&self, kind: &str, with: &serde_json::Value) -> Vec<WithError> {
        let Some(k) = self.0.get(kind) else {
            return Vec::new();
        };
        k.check(with)
            .into_iter()
            .map(|e| WithError {
                path: e.path,
                message: e.message,
                hint: e.hint,
            })
            .collect()
    }
}
