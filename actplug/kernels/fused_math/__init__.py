"""Formulas written for Inductor's fused CPU loops: the same functions, cheaper instructions.

The plain math of :mod:`actplug.functional` is also what autograd, ``torch.compile`` and export
differentiate, so it picks the ops with the safest gradients (``hypot``, ``expm1``). Inside a fused
kernel with an analytic backward, gradients of the formula itself never matter, and those ops are
several times slower when vectorised than ``sqrt``, a division or a multiply-add; so are the
library's ``exp``, ``log`` and ``erf``, which bound these kernels' speed on a CPU (the loads and
stores cost what ReLU's do). For float32 (and the half types, computed in float32) the functions
here use cheap ops with explicit guards, and rational functions fitted to float32 precision
(``tools/fit_rational.py``) in place of library calls, staying within a few ulps of the plain math
(the tests hold them to the float64 references); float64 keeps the plain math as it is.

One module per activation family, each mirroring its counterpart in :mod:`actplug.functional`
(:mod:`.smu`, :mod:`.pflu`, :mod:`.srelu`, :mod:`.gish`, :mod:`.ash`), and :mod:`.rational`, the
fitted rational functions they share.
"""
