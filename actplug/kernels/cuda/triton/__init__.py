"""Triton kernels for the activations: what :mod:`actplug.kernels` runs on CUDA tensors.

(And on CPU tensors under ``TRITON_INTERPRET=1``, which is how the tests run them without a GPU.)

* :func:`elementwise_forward` / :func:`elementwise_backward`: SMU, SMU-1, PFLU, LPFLU, FPFLU, Gish and
  SReLU on a flat tensor, with gradients for x and every scalar parameter from x alone;
* :func:`ash_forward` / :func:`ash_backward`: ASH on a (samples, elements) matrix, two passes each way.

Every kernel loads its input in its own dtype (float32, float16 or bfloat16), computes in float32 the
same functions as the plain math of :mod:`actplug.activations` (same clamps and saturation, same stable forms), and
stores in the input's dtype. Scalar parameters are read from device memory: no host synchronisation.
"""

from ._ash import ash_backward, ash_forward
from ._elementwise import ACTIVATIONS, elementwise_backward, elementwise_forward

__all__ = ["ACTIVATIONS", "ash_backward", "ash_forward", "elementwise_backward", "elementwise_forward"]
