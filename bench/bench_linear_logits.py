"""linear_logits, X @ W + b (decision_function's kernel): fastsoftmax against its peers on one minibatch and on
the 60000 training rows."""

from bench.runner import kernel_benchmarks

test_cpu, test_gpu = kernel_benchmarks("linear_logits")
