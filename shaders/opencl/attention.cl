// y = softmax(q k^T * scale + mask) v, per sequence and head
//
// As Hugging Face's CLIPAttention (and the CPU backend): q is scaled first,
// scores q k^T (+ -inf above the diagonal when causal), softmax in fp32,
// y = p v, heads side by side. qkv is [batch * seq, 3 * heads * head_dim]
// with the q, k and v blocks next to each other; head h uses columns
// h*D .. h*D+D-1 of each block.
//
// One work-group of ROW_LS work-items per (query row, head, sequence):
// work-group (x, y, z). The row's scores live in local memory (`sc`, seq
// floats, sized by the dispatch code as the kernel's last argument): one key
// per work-item for the scores, common.cl's reductions for the max and the
// sum, then one output column per work-item for p v.

// pclip__attention_params
kernel __attribute__((reqd_work_group_size(ROW_LS, 1, 1))) void
attention(global const float *qkv, uint xo, global float *y, uint yo, pclip__attention_params p,
          local float *sc) {
    local float red[ROW_LS];
    const int S = p.seq, H = p.heads, D = p.head_dim, lid = get_local_id(0);
    const int i = get_group_id(0), h = get_group_id(1);
    const size_t b = get_group_id(2);
    const size_t ld = 3 * (size_t)H * D; // a row of qkv
    global const float *base = qkv + xo + b * S * ld;
    global const float *q = base + i * ld + h * D;
    const int seen = p.causal ? i + 1 : S;
    float m = -INFINITY;
    for (int j = lid; j < seen; j += ROW_LS) {
        global const float *k = base + j * ld + H * D + h * D;
        float s = 0.0f;
        for (int d = 0; d < D; d++) s = fma(q[d] * p.scale, k[d], s);
        sc[j] = s;
        m = fmax(m, s);
    }
    m = pclip_max(red, m);
    float l = 0.0f;
    for (int j = lid; j < seen; j += ROW_LS) {
        float e = pclip_exp(sc[j] - m);
        sc[j] = e;
        l += e;
    }
    l = pclip_sum(red, l); // its barriers also publish every sc[j]
    global float *yr = y + yo + (b * S + i) * (size_t)H * D + h * D;
    for (int d = lid; d < D; d += ROW_LS) {
        global const float *v = base + 2 * H * D + h * D + d;
        float acc = 0.0f;
        for (int j = 0; j < seen; j++) acc = fma(sc[j], v[j * ld], acc);
        yr[d] = acc / l;
    }
}
