//! The DAG of a workflow. Edges come only from references between stages
//! (`${{ stages.S.outputs.O }}`); a cycle is an error that names every stage on it.

use std::collections::BTreeSet;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use sluice_spec::{ResolvedStage, ResolvedWorkflow, SpecError, SpecErrors};

/// A workflow compiled to a DAG, with a deterministic topological order.
#[derive(Debug)]
pub struct Plan {
    pub workflow: ResolvedWorkflow,
    graph: DiGraph<usize, ()>,
    order: Vec<usize>,
}

impl Plan {
    pub fn new(workflow: ResolvedWorkflow) -> Result<Plan, SpecErrors> {
        let mut graph = DiGraph::new();
        let nodes: Vec<NodeIndex> = (0..workflow.stages.len())
            .map(|i| graph.add_node(i))
            .collect();
        for (i, stage) in workflow.stages.iter().enumerate() {
            let upstream: BTreeSet<usize> = stage
                .dependencies
                .iter()
                .filter_map(|d| workflow.stages.iter().position(|s| s.name == d.stage))
                .collect();
            for u in upstream {
                graph.add_edge(nodes[u], nodes[i], ());
            }
        }
        if let Some(err) = find_cycle(&workflow, &graph) {
            return Err(err.into());
        }
        let order = stable_topo_order(&graph, workflow.stages.len());
        Ok(Plan {
            workflow,
            graph,
            order,
        })
    }

    pub fn stages(&self) -> &[ResolvedStage] {
        &self.workflow.stages
    }

    pub fn stage(&self, i: usize) -> &ResolvedStage {
        &self.workflow.stages[i]
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.workflow.stages.iter().position(|s| s.name == name)
    }

    /// Stage indices in dependency order; ties keep file order.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Direct upstream stages of `i`.
    pub fn upstream(&self, i: usize) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .graph
            .edges_directed(NodeIndex::new(i), petgraph::Direction::Incoming)
            .map(|e| e.source().index())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Direct downstream stages of `i`.
    pub fn downstream(&self, i: usize) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .graph
            .edges_directed(NodeIndex::new(i), petgraph::Direction::Outgoing)
            .map(|e| e.target().index())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Longest distance from a root, per stage (roots are level 0): the rows of `sluice dag`.
    pub fn levels(&self) -> Vec<usize> {
        let mut level = vec![0; self.workflow.stages.len()];
        for &i in &self.order {
            for u in self.upstream(i) {
                level[i] = level[i].max(level[u] + 1);
            }
        }
        level
    }

    /// Every stage that `targets` depend on, and the targets themselves, in order.
    pub fn closure(&self, targets: &[usize]) -> Vec<usize> {
        let mut keep = vec![false; self.workflow.stages.len()];
        let mut stack: Vec<usize> = targets.to_vec();
        while let Some(i) = stack.pop() {
            if !keep[i] {
                keep[i] = true;
                stack.extend(self.upstream(i));
            }
        }
        self.order.iter().copied().filter(|&i| keep[i]).collect()
    }
}

/// Kahn's algorithm, always taking the ready stage that comes first in the file.
fn stable_topo_order(graph: &DiGraph<usize, ()>, n: usize) -> Vec<usize> {
    let mut indegree = vec![0usize; n];
    for e in graph.edge_references() {
        indegree[e.target().index()] += 1;
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for e in graph.edges_directed(NodeIndex::new(i), petgraph::Direction::Outgoing) {
            let t = e.target().index();
            indegree[t] -= 1;
            if indegree[t] == 0 {
                ready.insert(t);
            }
        }
    }
    order
}

/// The first cycle in file order, as an error naming each stage on it.
fn find_cycle(wf: &ResolvedWorkflow, graph: &DiGraph<usize, ()>) -> Option<SpecError> {
    let mut components: Vec<Vec<usize>> = tarjan_scc(graph)
        .into_iter()
        .map(|c| c.into_iter().map(NodeIndex::index).collect::<Vec<_>>())
        .filter(|c| c.len() > 1)
        .collect();
    for c in &mut components {
        c.sort_unstable();
    }
    components.sort();
    let component = components.first()?;
    // Walk from the first stage along edges inside the component until we come back.
    let start = component[0];
    let mut path = vec![start];
    let mut seen = BTreeSet::from([start]);
    let mut current = start;
    loop {
        let stage = &wf.stages[current];
        let next = stage
            .dependencies
            .iter()
            .filter_map(|d| wf.stages.iter().position(|s| s.name == d.stage))
            .filter(|u| component.contains(u))
            .min()?;
        // Dependencies point upstream; the cycle reads naturally in the reverse direction.
        if next == start || seen.contains(&next) {
            path.push(next);
            break;
        }
        seen.insert(next);
        path.push(next);
        current = next;
    }
    path.reverse();
    let names: Vec<&str> = path.iter().map(|&i| wf.stages[i].name.as_str()).collect();
    let first = &wf.stages[path[0]];
    let at = wf.stages[path[1]]
        .dependencies
        .iter()
        .find(|d| d.stage == first.name)
        .map(|d| d.pos)
        .unwrap_or(first.pos);
    Some(
        SpecError::new(
            &wf.file,
            at,
            format!("dependency cycle: {}", names.join(" → ")),
        )
        .with_hint("stages are ordered by their `${{ stages.… }}` references, which must not loop")
        .with_source(&wf.source),
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{KeyMaterial, StageKind};

    fn plan(src: &str) -> Result<Plan, SpecErrors> {
        let wf = sluice_spec::load(Path::new("w.yaml"), src, &[], &sluice_spec::NoKinds)?;
        Plan::new(wf)
    }

    fn names(p: &Plan, idx: &[usize]) -> Vec<String> {
        idx.iter().map(|&i| p.stage(i).name.clone()).collect()
    }

    #[test]
    fn orders_by_references_then_file_order() {
        let p = plan(
            "version: 1\nname: t\nstages:\n  c:\n    run: cat ${{ stages.b.outputs.o }} > ${{ outputs.o }}\n    outputs: {o: c.txt}\n  a:\n    run: echo > ${{ outputs.o }}\n    outputs: {o: a.txt}\n  b:\n    run: x\n    inputs:\n      i: ${{ stages.a.outputs.o }}\n    outputs: {o: b.txt}\n  d:\n    run: y\n",
        )
        .unwrap();
        assert_eq!(names(&p, p.order()), ["a", "b", "c", "d"]);
        assert_eq!(p.levels(), vec![2, 0, 1, 0]);
        assert_eq!(names(&p, &p.closure(&[2])), ["a", "b"]);
    }

    #[test]
    fn names_the_cycle() {
        let err = plan(
            "version: 1\nname: t\nstages:\n  a:\n    run: x ${{ stages.c.outputs.o }}\n    outputs: {o: a}\n  b:\n    run: x ${{ stages.a.outputs.o }}\n    outputs: {o: b}\n  c:\n    run: x ${{ stages.b.outputs.o }}\n    outputs: {o: c}\n",
        )
        .unwrap_err();
        let e = &err.errors()[0];
        assert_eq!(e.message, "dependency cycle: a → b → c → a");
        assert_eq!(e.pos.line, 8);
    }

    #[test]
    fn keys_are_stable_and_sensitive() {
        let src = "version: 1\nname: t\nparams: {n: 1}\nstages:\n  a:\n    run: echo ${{ params.n }} > ${{ outputs.o }}\n    inputs: {i: in.txt}\n    outputs: {o: a.txt}\n";
        let p = plan(src).unwrap();
        let digests = [("i".to_owned(), ("in.txt".to_owned(), "00".repeat(32)))].into();
        let key = |p: &Plan, d| KeyMaterial::new(p.stage(0), StageKind::run(), d).key();
        let k1 = key(&p, &digests);
        assert_eq!(k1, key(&p, &digests));
        let other = [("i".to_owned(), ("in.txt".to_owned(), "11".repeat(32)))].into();
        assert_ne!(k1, key(&p, &other));
        let p2 = plan(&src.replace("{n: 1}", "{n: 2}")).unwrap();
        assert_ne!(k1, key(&p2, &digests));
        let json = KeyMaterial::new(p.stage(0), StageKind::run(), &digests).canonical_json();
        assert!(json.contains("\"command\":\"echo ${{ params.n }} > ${{ outputs.o }}\""));
        assert!(!json.contains("/tmp"), "{json}");
    }
}
