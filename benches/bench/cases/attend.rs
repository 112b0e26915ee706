//! Sparse attention (bit-identical on every level, so checked bit-exact against scalar):
//! decode over 2048 selected of 8192 cached keys (32 query heads over 8 and 32 KV heads,
//! bound: reading the touched K/V bytes) and prefill of 512 queries over 1024 selected
//! keys, causal by position (8 query heads over 2 KV heads here, so that the scalar
//! check stays short; `cargo bench --bench attend` has the full 32-head shape; bound:
//! the FMA peak).

use super::{bits, values};
use crate::{Bound, Case};
use tokenroute::{
    bf16, AttendElement, AttendExtras, AttendOptions, Heads, HeadsMut, Isa, Kernels, KeySubset,
};

struct Attend<T> {
    name: &'static str,
    n_q: usize,
    h_q: usize,
    h_kv: usize,
    d: usize,
    n_k: usize,
    q: Vec<T>,
    k: Vec<T>,
    v: Vec<T>,
    sel: Vec<u32>,
    q_pos: Vec<u32>,
    k_pos: Vec<u32>,
    out: Vec<f32>,
    visible: usize,
}

impl<T: AttendElement> Case for Attend<T> {
    fn family(&self) -> &'static str {
        "attend"
    }
    fn name(&self) -> String {
        format!("{}_{}", self.name, T::DTYPE.name())
    }
    fn shape(&self) -> String {
        format!(
            "{}q_{}of{}k_{}/{}h_d{}",
            self.n_q,
            self.sel.len(),
            self.n_k,
            self.h_q,
            self.h_kv,
            self.d
        )
    }
    fn bytes(&self) -> u64 {
        (2 * self.sel.len() * self.h_kv * self.d * std::mem::size_of::<T>()) as u64
    }
    fn flops(&self) -> u64 {
        (4 * self.visible * self.d * self.h_q) as u64
    }
    fn bound(&self) -> Bound {
        if self.n_q == 1 {
            Bound::Read(self.bytes())
        } else {
            Bound::Fma
        }
    }
    fn run(&mut self, k: &'static Kernels) {
        let opts = AttendOptions {
            causal: true,
            q_positions: Some(&self.q_pos),
            k_positions: Some(&self.k_pos),
            ..Default::default()
        };
        k.attention(
            Heads::dense(&self.q, self.n_q, self.h_q, self.d).unwrap(),
            Heads::dense(&self.k, self.n_k, self.h_kv, self.d).unwrap(),
            Heads::dense(&self.v, self.n_k, self.h_kv, self.d).unwrap(),
            KeySubset::Indices(&self.sel),
            &opts,
            HeadsMut::dense(&mut self.out, self.n_q, self.h_q, self.d).unwrap(),
            AttendExtras::default(),
        )
        .unwrap();
    }
    fn output(&self) -> Vec<u32> {
        bits(&self.out)
    }
    fn time_level(&self, isa: Isa) -> bool {
        isa != Isa::Scalar || self.n_q == 1
    }
}

#[allow(clippy::too_many_arguments)]
fn attend<T: AttendElement>(
    name: &'static str,
    conv: fn(f32) -> T,
    n_q: usize,
    h_q: usize,
    h_kv: usize,
    d: usize,
    n_k: usize,
    sel: Vec<u32>,
) -> Box<dyn Case> {
    let k_pos: Vec<u32> = (0..n_k as u32).collect();
    let q_pos: Vec<u32> = if n_q == 1 {
        vec![n_k as u32]
    } else {
        sel[sel.len() - n_q..].to_vec()
    };
    let visible = q_pos
        .iter()
        .map(|&p| sel.iter().filter(|&&t| k_pos[t as usize] <= p).count())
        .sum();
    Box::new(Attend::<T> {
        name,
        n_q,
        h_q,
        h_kv,
        d,
        n_k,
        q: values(n_q * h_q * d, 11).into_iter().map(conv).collect(),
        k: values(n_k * h_kv * d, 12).into_iter().map(conv).collect(),
        v: values(n_k * h_kv * d, 13).into_iter().map(conv).collect(),
        sel,
        q_pos,
        k_pos,
        out: vec![0.0; n_q * h_q * d],
        visible,
    })
}

pub fn cases(quick: bool) -> Vec<Box<dyn Case>> {
    let mut v: Vec<Box<dyn Case>> = Vec::new();
    let sel_d: Vec<u32> = (0..2048u32).map(|j| 4 * j + (j * 7919) % 4).collect();
    let kvs: &[usize] = if quick { &[8] } else { &[8, 32] };
    for &h_kv in kvs {
        v.push(attend::<f32>(
            "decode",
            |x| x,
            1,
            32,
            h_kv,
            128,
            8192,
            sel_d.clone(),
        ));
        v.push(attend::<bf16>(
            "decode",
            bf16::from_f32,
            1,
            32,
            h_kv,
            128,
            8192,
            sel_d.clone(),
        ));
    }
    let n_q = if quick { 128 } else { 512 };
    let sel_p: Vec<u32> = (0..1024u32).map(|j| 2 * j).collect();
    v.push(attend::<f32>(
        "prefill_causal",
        |x| x,
        n_q,
        8,
        2,
        128,
        2048,
        sel_p.clone(),
    ));
    v.push(attend::<bf16>(
        "prefill_causal",
        bf16::from_f32,
        n_q,
        8,
        2,
        128,
        2048,
        sel_p,
    ));
    v
}
