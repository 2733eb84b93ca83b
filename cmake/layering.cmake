# The layering rule of core/ and backends/, checked at every build.
#
#   cmake -DROOT=<source dir> -DSTAMP=<file> -P cmake/layering.cmake
#
# Every quoted #include in core/<layer>/ and backends/<name>/ must name
#   - a file in the same folder (with or without its folder's name), or
#   - "internal.h" (core's root: context, errors, allocator, limits), or
#   - "<folder>/<file>" where <folder> is a layer that the file's own layer may
#     include (the table below), or
#   - a generated header the folder owns (vk_shaders.h, cl_kernels.h).
# Anything else (a layer above, "../", a backend from core, core from a
# layer's sibling it may not use) fails the build with the file, the line and
# the rule. Angle-bracket includes (system and third-party headers) are not
# checked.
#
# The layers, lowest first. A layer may include the ones listed for it:
#   (root)  internal.h ctx.c utf8.c   nothing of core
#   io      files, JSON, safetensors, .npy               root
#   text    Unicode, HTML entities, the CLIP tokenizer   root io
#   image   decode, preprocessing, the batch pipeline    root io
#   graph   tensors, ops, planner, backend layer, parity root
#   model   config, weights, encoders, encode calls      root io text image graph
#   apps    embed, classify, search, index, verify       root io text image graph model
#   train   datasets, heads, trainer, export             root io text image graph model apps
#   backends/<name>                                      root graph
cmake_minimum_required(VERSION 3.18)

if(NOT ROOT)
  message(FATAL_ERROR "layering.cmake: pass -DROOT=<source dir>")
endif()

set(_allowed_io "")
set(_allowed_text "io")
set(_allowed_image "io")
set(_allowed_graph "")
set(_allowed_model "io;text;image;graph")
set(_allowed_apps "io;text;image;graph;model")
set(_allowed_train "io;text;image;graph;model;apps")
set(_allowed_backend "graph")
set(_layers "io;text;image;graph;model;apps;train")
set(_generated "vk_shaders.h;cl_kernels.h")

set(_errors "")
set(_checked 0)

# Checks one file: `layer` is its layer name, `allowed` the folders it may
# include, `dir` its folder.
function(_pclip_check file layer allowed dir)
  file(STRINGS "${file}" _lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"")
  file(RELATIVE_PATH _rel "${ROOT}" "${file}")
  foreach(_line IN LISTS _lines)
    string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*\"([^\"]*)\".*" "\\1" _inc "${_line}")
    set(_ok OFF)
    if(_inc STREQUAL "internal.h" OR _inc STREQUAL "portclip.h")
      set(_ok ON)
    elseif(NOT _inc MATCHES "/")
      if(EXISTS "${dir}/${_inc}" OR _inc IN_LIST _generated)
        set(_ok ON)
      endif()
    elseif(_inc MATCHES "^portclip/")
      set(_ok ON) # the public topic headers
    else()
      string(REGEX REPLACE "/.*" "" _folder "${_inc}")
      if((_folder IN_LIST allowed OR _folder STREQUAL layer) AND _folder IN_LIST _layers AND
         EXISTS "${ROOT}/core/${_inc}")
        set(_ok ON)
      endif()
    endif()
    if(NOT _ok)
      set(_errors "${_errors}\n  ${_rel}: #include \"${_inc}\": layer '${layer}' may include only internal.h, its own folder and: ${allowed}" PARENT_SCOPE)
    endif()
  endforeach()
endfunction()

file(GLOB _root_files "${ROOT}/core/*.c" "${ROOT}/core/*.h")
foreach(f IN LISTS _root_files)
  _pclip_check("${f}" "root" "" "${ROOT}/core")
  math(EXPR _checked "${_checked} + 1")
endforeach()

file(GLOB _folders LIST_DIRECTORIES true "${ROOT}/core/*")
foreach(d IN LISTS _folders)
  if(NOT IS_DIRECTORY "${d}")
    continue()
  endif()
  get_filename_component(_layer "${d}" NAME)
  if(NOT _layer IN_LIST _layers)
    set(_errors "${_errors}\n  core/${_layer}/: not a layer (add it to cmake/layering.cmake with its rule)")
    continue()
  endif()
  file(GLOB_RECURSE _files "${d}/*.c" "${d}/*.h")
  foreach(f IN LISTS _files)
    get_filename_component(_fdir "${f}" DIRECTORY)
    if(NOT _fdir STREQUAL "${d}")
      file(RELATIVE_PATH _rel "${ROOT}" "${f}")
      set(_errors "${_errors}\n  ${_rel}: core/ is one level deep")
      continue()
    endif()
    _pclip_check("${f}" "${_layer}" "${_allowed_${_layer}}" "${d}")
    math(EXPR _checked "${_checked} + 1")
  endforeach()
endforeach()

file(GLOB _backends LIST_DIRECTORIES true "${ROOT}/backends/*")
foreach(d IN LISTS _backends)
  if(NOT IS_DIRECTORY "${d}")
    continue()
  endif()
  get_filename_component(_name "${d}" NAME)
  file(GLOB _files "${d}/*.c" "${d}/*.h")
  foreach(f IN LISTS _files)
    _pclip_check("${f}" "backends/${_name}" "${_allowed_backend}" "${d}")
    math(EXPR _checked "${_checked} + 1")
  endforeach()
endforeach()

if(_errors)
  message(FATAL_ERROR "portclip layering check failed:${_errors}")
endif()
if(STAMP)
  file(WRITE "${STAMP}" "${_checked} files checked\n")
endif()
