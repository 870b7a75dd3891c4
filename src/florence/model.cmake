# florence/ model part: DaViT vision encoder and image projection, BART encoder/decoder with its
# key/value cache, the Model facade (later generation) on nn/ ops, reading weights through
# celeriac_florence_weights. Included from src/florence/CMakeLists.txt.
add_library(celeriac_florence_model STATIC
  ${CMAKE_CURRENT_LIST_DIR}/davit.cc
  ${CMAKE_CURRENT_LIST_DIR}/weights_bf16.cc
  ${CMAKE_CURRENT_LIST_DIR}/bart_layers.cc
  ${CMAKE_CURRENT_LIST_DIR}/bart_encoder.cc
  ${CMAKE_CURRENT_LIST_DIR}/bart_kv_cache.cc
  ${CMAKE_CURRENT_LIST_DIR}/bart_decoder.cc
  ${CMAKE_CURRENT_LIST_DIR}/model.cc
)
# The cache attention's inner loops are written for the vectoriser (see bart_kv_cache.cc).
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/bart_kv_cache.cc PROPERTIES
  COMPILE_OPTIONS "-O3;-fopenmp-simd")
target_include_directories(celeriac_florence_model PUBLIC ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(celeriac_florence_model PUBLIC celeriac_nn celeriac_florence_weights
  celeriac_florence celeriac_image)

celeriac_florence_test(celeriac_florence_model_test OMP_PASSIVE
  SOURCES davit_test.cc bart_kv_cache_test.cc model_test.cc
  LIBS celeriac_florence_model celeriac_florence_generate)
