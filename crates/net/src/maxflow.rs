//! Maximum flow on a small graph, by Dinic's algorithm, with a bound on the work of one run:
//! what [`crate::reputation`] computes a peer's reputation with.
//!
//! Capacities are bytes (`f64`, none negative). A run stops after [`FlowGraph::max_flow`]'s
//! `budget` edge visits; the flow found by then is a lower bound on the maximum, which is
//! the safe side for a reputation (a peer is never credited with more than the graph
//! carries).

use std::collections::VecDeque;

/// Flow below this is taken as none (capacities are byte counts; rounding leaves dust).
const EPSILON: f64 = 1e-9;

/// A directed graph with capacities on its edges, and the flow one run put through it.
#[derive(Debug, Clone, Default)]
pub struct FlowGraph {
    /// Edges out of each node, as indices into `to` and `cap` (each edge is stored with its
    /// reverse next to it: edge `e` and `e ^ 1`).
    out: Vec<Vec<usize>>,
    to: Vec<usize>,
    cap: Vec<f64>,
}

impl FlowGraph {
    pub fn new(nodes: usize) -> FlowGraph {
        FlowGraph {
            out: vec![Vec::new(); nodes],
            to: Vec::new(),
            cap: Vec::new(),
        }
    }

    pub fn nodes(&self) -> usize {
        self.out.len()
    }

    /// Adds an edge `a → b` of capacity `c` and returns its number (a loop, or a
    /// non-positive or non-finite `c`, adds nothing).
    pub fn add_edge(&mut self, a: usize, b: usize, c: f64) -> Option<usize> {
        if a == b || !(c > 0.0 && c.is_finite()) {
            return None;
        }
        let e = self.to.len();
        self.out[a].push(self.to.len());
        self.to.push(b);
        self.cap.push(c);
        self.out[b].push(self.to.len());
        self.to.push(a);
        self.cap.push(0.0);
        Some(e)
    }

    /// Takes edge `e` (as [`add_edge`](Self::add_edge) numbered it) out of the graph.
    pub fn remove_edge(&mut self, e: usize) {
        self.cap[e] = 0.0;
        self.cap[e ^ 1] = 0.0;
    }

    /// The maximum flow from `s` to `t`, leaving the residual capacities in the graph (run
    /// it on a clone to keep the original). At most `budget` edge visits: past them, the
    /// flow found so far.
    pub fn max_flow(&mut self, s: usize, t: usize, budget: u64) -> f64 {
        let n = self.nodes();
        if s == t || s >= n || t >= n {
            return 0.0;
        }
        let mut work = 0u64;
        let mut flow = 0.0;
        let mut level = vec![usize::MAX; n];
        let mut next = vec![0usize; n];
        loop {
            // Levels by breadth-first search over edges with room left.
            level.fill(usize::MAX);
            level[s] = 0;
            let mut queue = VecDeque::from([s]);
            while let Some(v) = queue.pop_front() {
                for &e in &self.out[v] {
                    work += 1;
                    let w = self.to[e];
                    if self.cap[e] > EPSILON && level[w] == usize::MAX {
                        level[w] = level[v] + 1;
                        queue.push_back(w);
                    }
                }
            }
            if level[t] == usize::MAX || work >= budget {
                return flow;
            }
            next.fill(0);
            // Blocking flow along level-increasing paths, found depth first without
            // recursion: `path` holds the edges taken from `s`.
            let mut path: Vec<usize> = Vec::new();
            let mut v = s;
            loop {
                if v == t {
                    let push = path
                        .iter()
                        .map(|&e| self.cap[e])
                        .fold(f64::INFINITY, f64::min);
                    for &e in &path {
                        self.cap[e] -= push;
                        self.cap[e ^ 1] += push;
                    }
                    flow += push;
                    path.clear();
                    v = s;
                    continue;
                }
                let mut advanced = false;
                while next[v] < self.out[v].len() {
                    work += 1;
                    let e = self.out[v][next[v]];
                    let w = self.to[e];
                    if self.cap[e] > EPSILON && level[w] == level[v] + 1 {
                        path.push(e);
                        v = w;
                        advanced = true;
                        break;
                    }
                    next[v] += 1;
                }
                if work >= budget {
                    return flow;
                }
                if !advanced {
                    // A dead end: never tried again in this phase.
                    level[v] = usize::MAX;
                    match path.pop() {
                        Some(e) => {
                            v = self.to[e ^ 1];
                            next[v] += 1;
                        }
                        None => break,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest cut between `s` and `t`, by trying every set of nodes holding `s` and
    /// not `t`: the max flow, by the max-flow min-cut theorem.
    fn min_cut(n: usize, edges: &[(usize, usize, f64)], s: usize, t: usize) -> f64 {
        let mut best = f64::INFINITY;
        for set in 0u32..(1 << n) {
            if set & (1 << s) == 0 || set & (1 << t) != 0 {
                continue;
            }
            let cut: f64 = edges
                .iter()
                .filter(|(a, b, _)| set & (1 << a) != 0 && set & (1 << b) == 0)
                .map(|(_, _, c)| c)
                .sum();
            best = best.min(cut);
        }
        best
    }

    /// On 2,000 small random graphs (up to 8 nodes, parallel edges and cycles included), the
    /// flow equals the smallest cut.
    #[test]
    fn the_flow_is_the_smallest_cut_on_random_graphs() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for _ in 0..2000 {
            let n = 2 + rnd(7) as usize;
            let m = rnd(3 * n as u64 + 1) as usize;
            let edges: Vec<(usize, usize, f64)> = (0..m)
                .map(|_| {
                    (
                        rnd(n as u64) as usize,
                        rnd(n as u64) as usize,
                        rnd(1000) as f64,
                    )
                })
                .collect();
            let mut g = FlowGraph::new(n);
            for &(a, b, c) in &edges {
                g.add_edge(a, b, c);
            }
            let (s, t) = (0, n - 1);
            let edges: Vec<_> = edges.into_iter().filter(|(a, b, _)| a != b).collect();
            let want = min_cut(n, &edges, s, t);
            let got = g.max_flow(s, t, u64::MAX);
            assert!(
                (got - want).abs() < 1e-6,
                "{n} nodes {edges:?}: {got} != {want}"
            );
        }
    }

    /// A budget too small for the whole flow gives a part of it, never more.
    #[test]
    fn a_budget_gives_a_lower_bound() {
        let mut g = FlowGraph::new(4);
        g.add_edge(0, 1, 5.0);
        g.add_edge(1, 3, 5.0);
        g.add_edge(0, 2, 7.0);
        g.add_edge(2, 3, 7.0);
        assert_eq!(g.clone().max_flow(0, 3, u64::MAX), 12.0);
        for budget in 0..40 {
            let f = g.clone().max_flow(0, 3, budget);
            assert!((0.0..=12.0).contains(&f), "{budget}: {f}");
        }
        assert_eq!(g.max_flow(0, 0, u64::MAX), 0.0);
    }
}
