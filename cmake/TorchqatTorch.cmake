# Finds LibTorch in the installed torch wheel and decides whether the CUDA
# kernels are built (TORCHQAT_WITH_CUDA). Torch's own CMake config needs the
# CUDA toolkit's root when the wheel is a CUDA build, so it is located first.

execute_process(
  COMMAND ${Python_EXECUTABLE} -c
    "import torch, torch.utils; print(torch.utils.cmake_prefix_path); print(torch.__version__); print(torch.version.cuda or '')"
  OUTPUT_VARIABLE _torch_info
  RESULT_VARIABLE _torch_rc
  OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT _torch_rc EQUAL 0)
  message(FATAL_ERROR "torchqat: `import torch` failed with ${Python_EXECUTABLE}; install torch first")
endif()
string(REPLACE "\n" ";" _torch_info "${_torch_info}")
list(GET _torch_info 0 _torch_prefix)
list(GET _torch_info 1 TORCHQAT_TORCH_VERSION)
list(LENGTH _torch_info _n)
set(_torch_cuda "")
if(_n GREATER 2)
  list(GET _torch_info 2 _torch_cuda)
endif()
list(APPEND CMAKE_PREFIX_PATH "${_torch_prefix}")

# Where nvcc lives decides the toolkit root (/usr/local/bin/nvcc may be a
# wrapper script, so the toolkit's own bin/ folders are searched first).
set(TORCHQAT_WITH_CUDA OFF)
set(_why "")
if(TORCHQAT_CUDA STREQUAL "OFF")
  set(_why "TORCHQAT_CUDA=OFF")
elseif(_torch_cuda STREQUAL "")
  set(_why "the installed torch ${TORCHQAT_TORCH_VERSION} is a CPU build")
else()
  find_program(TORCHQAT_NVCC nvcc
    HINTS $ENV{CUDA_HOME}/bin $ENV{CUDA_PATH}/bin /usr/local/cuda/bin NO_DEFAULT_PATH)
  if(NOT TORCHQAT_NVCC)
    find_program(TORCHQAT_NVCC nvcc)
  endif()
  if(TORCHQAT_NVCC)
    get_filename_component(_cuda_root "${TORCHQAT_NVCC}" DIRECTORY)
    get_filename_component(_cuda_root "${_cuda_root}" DIRECTORY)
    if(EXISTS "${_cuda_root}/include/cuda_runtime.h")
      set(TORCHQAT_WITH_CUDA ON)
    else()
      set(_why "nvcc at ${TORCHQAT_NVCC} has no toolkit headers beside it (set CUDA_HOME)")
    endif()
  else()
    set(_why "no nvcc found (set CUDA_HOME)")
  endif()
endif()
if(TORCHQAT_CUDA STREQUAL "ON" AND NOT TORCHQAT_WITH_CUDA)
  message(FATAL_ERROR "torchqat: TORCHQAT_CUDA=ON but CUDA cannot be built: ${_why}")
endif()

if(TORCHQAT_WITH_CUDA)
  set(CUDA_TOOLKIT_ROOT_DIR "${_cuda_root}" CACHE PATH "CUDA toolkit root")
  set(CMAKE_CUDA_COMPILER "${_cuda_root}/bin/nvcc" CACHE FILEPATH "nvcc")
  # Torch turns TORCH_CUDA_ARCH_LIST into -gencode flags for every .cu; keep
  # the list short (build time), with PTX for GPUs newer than the last entry.
  if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
    set(TORCH_CUDA_ARCH_LIST "7.5;8.0;8.6;8.9;9.0+PTX")
  endif()
endif()

if(TORCHQAT_WITH_CUDA OR _torch_cuda STREQUAL "")
  find_package(Torch REQUIRED)
else()
  # A CUDA wheel's TorchConfig.cmake fails without the toolkit, so a CPU-only
  # build describes LibTorch itself, as torch.utils.cpp_extension does.
  execute_process(
    COMMAND ${Python_EXECUTABLE} -c
      "import torch; from torch.utils import cpp_extension as c; print(';'.join(c.include_paths())); print(';'.join(c.library_paths())); print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"
    OUTPUT_VARIABLE _torch_paths OUTPUT_STRIP_TRAILING_WHITESPACE)
  string(REPLACE "\n" ";" _torch_paths_list "${_torch_paths}")
  list(GET _torch_paths_list -1 _abi)
  list(GET _torch_paths_list -2 _torch_libdir)
  list(REMOVE_AT _torch_paths_list -1 -2)
  add_library(torch INTERFACE IMPORTED)
  set_target_properties(torch PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${_torch_paths_list}"
    INTERFACE_LINK_LIBRARIES "${_torch_libdir}/libtorch.so;${_torch_libdir}/libtorch_cpu.so;${_torch_libdir}/libc10.so"
    INTERFACE_COMPILE_DEFINITIONS "_GLIBCXX_USE_CXX11_ABI=${_abi}")
endif()

if(TORCHQAT_WITH_CUDA)
  message(STATUS "torchqat: CUDA kernels ON (torch ${TORCHQAT_TORCH_VERSION}, CUDA ${_torch_cuda}, nvcc ${CMAKE_CUDA_COMPILER})")
else()
  message(STATUS "torchqat: building for the CPU only: ${_why}")
endif()
