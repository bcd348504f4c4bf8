//! Macros of the Sluice SmartModule SDK; use them through `sluice_smartmodule`.
//!
//! `#[smartmodule(kind)]` leaves the user's function as written and adds, beside it, the
//! `extern "C"` export the host calls (`sluice_filter`, `sluice_map`, ...). The export does
//! no work itself: it hands the user's function to `sluice_smartmodule::__private`, so the
//! ABI lives in one ordinary, testable crate and this one only writes glue.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Data, DeriveInput, Fields, FnArg, Ident, ItemFn, Token, Type, parse_macro_input};

/// The kinds a SmartModule function can have, by attribute name, and the two hooks.
/// The guest side of `sluice_proto::SmartModuleKind::{attribute_name, export_name}`: the
/// SDK stays free of the wire crate, and `wasm/tests/it/kinds.rs` builds a module of every
/// kind with this macro and checks the engine names its kind from the export.
const KINDS: &[&str] = &[
    "filter",
    "map",
    "filter_map",
    "array_map",
    "aggregate",
    "init",
    "look_back",
];

/// Marks a SmartModule function and names its kind: `#[smartmodule(filter)]`, `(map)`,
/// `(filter_map)`, `(array_map)`, `(aggregate)`, `(init)`, `(look_back)`; add `params` to pass a
/// [`SmartOpt`](derive@SmartOpt) struct as the last argument: `#[smartmodule(map, params)]`.
#[proc_macro_attribute]
pub fn smartmodule(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    match expand_smartmodule(attr.into(), &func) {
        Ok(glue) => quote!(#func #glue).into(),
        Err(e) => {
            let e = e.to_compile_error();
            quote!(#func #e).into()
        }
    }
}

fn expand_smartmodule(attr: TokenStream2, func: &ItemFn) -> syn::Result<TokenStream2> {
    let args = Punctuated::<Ident, Token![,]>::parse_terminated.parse2(attr)?;
    let mut kind: Option<Ident> = None;
    let mut params = false;
    for arg in args {
        let name = arg.to_string();
        if name == "params" {
            params = true;
        } else if KINDS.contains(&name.as_str()) {
            if let Some(k) = &kind {
                return Err(syn::Error::new(
                    arg.span(),
                    format!("a SmartModule function has one kind; `{k}` was already given"),
                ));
            }
            kind = Some(arg);
        } else {
            return Err(syn::Error::new(
                arg.span(),
                format!(
                    "unknown SmartModule argument `{name}`; expected one of {} and optionally `params`",
                    KINDS.join(", ")
                ),
            ));
        }
    }
    let Some(kind) = kind else {
        return Err(syn::Error::new(
            Span::call_site(),
            format!("name the SmartModule kind: one of {}", KINDS.join(", ")),
        ));
    };
    let kind_name = kind.to_string();
    let user_fn = &func.sig.ident;
    let arity = func.sig.inputs.len();
    let base_arity = if kind_name == "aggregate" { 2 } else { 1 };
    let expected = base_arity + usize::from(params);
    if kind_name == "init" && params {
        return Err(syn::Error::new(
            kind.span(),
            "`init` receives every parameter already; `params` does not apply to it",
        ));
    }
    if kind_name == "look_back" && params {
        return Err(syn::Error::new(
            kind.span(),
            "`look_back` takes the record only; read parameters in `init` or the transform",
        ));
    }
    if arity != expected {
        return Err(syn::Error::new_spanned(
            &func.sig,
            format!(
                "a `{kind_name}` SmartModule function{} takes {expected} argument(s), this one takes {arity}",
                if params { " with `params`" } else { "" }
            ),
        ));
    }
    let sdk = quote!(::sluice_smartmodule::__private);
    let export = format_ident!("sluice_{}", kind_name);

    if kind_name == "init" {
        return Ok(quote! {
            const _: () = {
                #[unsafe(no_mangle)]
                pub unsafe extern "C" fn sluice_init(ptr: *mut u8, len: u32) -> u64 {
                    unsafe { #sdk::call(ptr, len, |input| #sdk::init(input, #user_fn)) }
                }
            };
        });
    }

    if kind_name == "look_back" {
        return Ok(quote! {
            const _: () = {
                #[unsafe(no_mangle)]
                pub unsafe extern "C" fn sluice_look_back(ptr: *mut u8, len: u32) -> u64 {
                    unsafe { #sdk::call(ptr, len, |input| #sdk::look_back(input, #user_fn)) }
                }
            };
        });
    }

    let (params_items, params_arg) = if params {
        let ty = params_type(func.sig.inputs.last().expect("arity checked"))?;
        let items = quote! {
            static SLUICE_PARAMS: ::std::sync::OnceLock<#ty> = ::std::sync::OnceLock::new();

            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn sluice_params(ptr: *mut u8, len: u32) -> u64 {
                unsafe { #sdk::call(ptr, len, |input| #sdk::params::<#ty>(input, &SLUICE_PARAMS)) }
            }
        };
        (items, quote!(, #sdk::params_or_default(&SLUICE_PARAMS)))
    } else {
        (quote!(), quote!())
    };
    let closure = if kind_name == "aggregate" {
        quote!(|acc, record| #user_fn(acc, record #params_arg))
    } else {
        quote!(|record| #user_fn(record #params_arg))
    };
    Ok(quote! {
        const _: () = {
            #params_items

            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn #export(ptr: *mut u8, len: u32) -> u64 {
                unsafe { #sdk::call(ptr, len, |input| #sdk::#kind(input, #closure)) }
            }
        };
    })
}

/// The `Opts` of a last argument written `params: &Opts`.
fn params_type(arg: &FnArg) -> syn::Result<Type> {
    if let FnArg::Typed(pat) = arg
        && let Type::Reference(r) = &*pat.ty
    {
        return Ok((*r.elem).clone());
    }
    Err(syn::Error::new_spanned(
        arg,
        "with `params`, the last argument must be a reference to the params struct: `params: &Opts`",
    ))
}

/// Implements `sluice_smartmodule::SmartOpt` for a struct that implements `Default` and
/// whose fields implement `FromStr` (with a `Display` error): each `-e key=value` sets field
/// `key`; an unknown key or an unparsable value is an init error naming the key.
#[proc_macro_derive(SmartOpt)]
pub fn derive_smart_opt(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand_smart_opt(&input)
        .unwrap_or_else(|e| e.to_compile_error())
        .into()
}

fn expand_smart_opt(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let name = &input.ident;
    let fields: Vec<(Ident, Type)> = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(named) => named
                .named
                .iter()
                .map(|f| (f.ident.clone().expect("named field"), f.ty.clone()))
                .collect(),
            Fields::Unit => Vec::new(),
            Fields::Unnamed(_) => {
                return Err(syn::Error::new_spanned(
                    name,
                    "SmartOpt needs named fields (the parameter keys) or a unit struct",
                ));
            }
        },
        _ => {
            return Err(syn::Error::new_spanned(
                name,
                "SmartOpt can only be derived for a struct",
            ));
        }
    };
    let known = if fields.is_empty() {
        "none".to_string()
    } else {
        fields
            .iter()
            .map(|(f, _)| f.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let arms = fields.iter().map(|(field, ty)| {
        let key = field.to_string();
        let ty_name = quote!(#ty).to_string().replace(' ', "");
        quote! {
            #key => {
                out.#field = <#ty as ::core::str::FromStr>::from_str(value).map_err(|e| {
                    ::std::format!("parameter `{}`: cannot parse {:?} as {}: {}", key, value, #ty_name, e)
                })?;
            }
        }
    });
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::sluice_smartmodule::SmartOpt for #name #ty_generics #where_clause {
            #[allow(unused_mut)]
            fn from_params(
                params: &::sluice_smartmodule::SmartModuleExtraParams,
            ) -> ::std::result::Result<Self, ::std::string::String> {
                let mut out = <Self as ::core::default::Default>::default();
                for (key, value) in params.iter() {
                    match key {
                        #(#arms)*
                        _ => {
                            return ::std::result::Result::Err(::std::format!(
                                "unknown parameter `{}` (this module accepts: {})", key, #known
                            ));
                        }
                    }
                }
                ::std::result::Result::Ok(out)
            }
        }
    })
}
