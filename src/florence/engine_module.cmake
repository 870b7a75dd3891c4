# florence/ engine module: the whole Florence-2 pipeline (engine.h) as libceleriac_florence.so,
# loaded with dlopen on first use (engine_library.h) so the `celeriac` executable, and a worker
# that only serves queue tasks, never maps oneDNN, OpenMP or OpenCL
# (docs/decisions/engine-module.md). Included from src/florence/CMakeLists.txt.
add_library(celeriac_florence_engine MODULE ${CMAKE_CURRENT_LIST_DIR}/engine.cc)
target_link_libraries(celeriac_florence_engine PRIVATE celeriac_florence_model
  celeriac_florence_generate celeriac_florence celeriac_image)
# Output next to `celeriac`, where engine_library.cc looks for it.
set_target_properties(celeriac_florence_engine PROPERTIES
  OUTPUT_NAME celeriac_florence
  LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
# Only the factory is exported: the static libraries' symbols stay inside the module, and its
# own calls bind to its own copies (the executable holds copies of the text and image parts).
target_link_options(celeriac_florence_engine PRIVATE -Wl,--exclude-libs,ALL -Wl,-Bsymbolic
  -Wl,--no-undefined)

# The loader, linked by the executable: dlopen + the factory, nothing of the model.
add_library(celeriac_florence_engine_library STATIC ${CMAKE_CURRENT_LIST_DIR}/engine_library.cc)
target_include_directories(celeriac_florence_engine_library PUBLIC ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(celeriac_florence_engine_library
  PUBLIC nlohmann_json::nlohmann_json PRIVATE ${CMAKE_DL_LIBS})
