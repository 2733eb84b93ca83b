// y[b*G+g, c*p*p+i*p+j] = x[b, c, gy*p+i, gx*p+j] (im2col)
//
// One work-item per output element; pure data movement, bit-exact.

// pclip__patches_params
kernel __attribute__((reqd_work_group_size(ELEM_LS, 1, 1))) void
patches(global const float *x, uint xo, global float *y, uint yo, pclip__patches_params p) {
    const size_t e = get_global_id(0);
    const uint C = (uint)p.channels, S = (uint)p.size, P = (uint)p.patch, G = S / P;
    const uint row_len = C * P * P;
    if (e >= (size_t)p.batch * G * G * row_len) return;
    const uint r = e / row_len, k = e % row_len;
    const uint b = r / (G * G), gy = r / G % G, gx = r % G;
    const uint c = k / (P * P), i = k / P % P, j = k % P;
    y[yo + e] = x[xo + ((b * C + c) * S + gy * P + i) * S + gx * P + j];
}
