# Table 4 of Roth et al. (ICML 2021), "Margin + MSD" on SOP: s2sd-dsd_r50-d128_margin_sop.py with four target branches
# of 512, 1024, 1536 and 2048 dimensions (MSD), each with its own criterion and distilled into the base embedding (the
# mean of the four KL terms, gamma 50).
_base_ = ['./s2sd-dsd_r50-d128_margin_sop.py']
model = dict(target_dims=(512, 1024, 1536, 2048))
