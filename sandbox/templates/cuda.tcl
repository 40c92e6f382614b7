#%Module1.0
# cuda/$version for Environment Modules (profile modules); Lmod's twin is cuda.lua.
proc ModulesHelp {} {
    puts stderr {CUDA $version for the sandbox cluster: its variables only (no toolkit; cn02's GPUs are fakes).}
}
module-whatis "Name: cuda"
module-whatis "Version: $version"
setenv CUDA_HOME $prefix
setenv CUDA_PATH $prefix
setenv NODEBOOK_SANDBOX_CUDA $version
prepend-path PATH $prefix/bin
