// y[b, 0] = cls, y[b, 1+t] = x[b*T+t]
//
// x [batch * T, W], cls [W], y [batch * (T + 1), W]; one work-item per
// output element; pure data movement, bit-exact.

// pclip__class_concat_params
kernel __attribute__((reqd_work_group_size(ELEM_LS, 1, 1))) void
class_concat(global const float *x, uint xo, global const float *cls, uint co, global float *y,
             uint yo, pclip__class_concat_params p) {
    const size_t e = get_global_id(0);
    const uint T = (uint)p.tokens, W = (uint)p.width;
    if (e >= (size_t)p.batch * (T + 1u) * W) return;
    const uint row = e / W, w = e % W;
    const uint b = row / (T + 1u), t = row % (T + 1u);
    y[yo + e] = t == 0u ? cls[co + w] : x[xo + (b * T + t - 1u) * W + w];
}
