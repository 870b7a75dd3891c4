# florence/ search part: greedy and beam search over a DecoderSession (no model needed), checked
# against transformers' generate() on a toy model. Included from src/florence/CMakeLists.txt.
add_library(celeriac_florence_generate STATIC
  ${CMAKE_CURRENT_LIST_DIR}/generate.cc
)
# Scores are float32 sums and quotients in PyTorch's order: no fused multiply-add; `omp simd`
# vectorises the element-wise loops, which stay exact. The double exp-sum and the max of
# log_softmax are nn's (nn::softmax_piece, vectorised with fast-math in nn/vmath.cc).
target_compile_options(celeriac_florence_generate PRIVATE -ffp-contract=off -fopenmp-simd)
target_include_directories(celeriac_florence_generate PUBLIC ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(celeriac_florence_generate PUBLIC nlohmann_json::nlohmann_json
                      PRIVATE celeriac_nn)

celeriac_florence_test(celeriac_florence_generate_test
  SOURCES generate_test.cc
  LIBS celeriac_florence_generate)

# The search on the real model: the tiny checkpoints end to end against the reference outputs.
celeriac_florence_test(celeriac_florence_generate_model_test OMP_PASSIVE
  SOURCES generate_model_test.cc
  LIBS celeriac_florence_generate celeriac_florence_model)
