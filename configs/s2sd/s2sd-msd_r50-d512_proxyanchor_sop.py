# Table 6 of Roth et al. (ICML 2021), "ProxyAnchor + MSD" on SOP: s2sd-dsd_r50-d512_proxyanchor_sop.py with four target
# branches of 512, 1024, 1536 and 2048 dimensions (MSD), each with its own criterion and distilled into the base
# embedding (the mean of the four KL terms, gamma 50). With the 512-d base, the first branch has the base dimension.
_base_ = ['./s2sd-dsd_r50-d512_proxyanchor_sop.py']
model = dict(target_dims=(512, 1024, 1536, 2048))
