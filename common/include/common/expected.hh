#pragma once
// A small value-or-error type with the parts of std::expected this tree uses. libstdc++ 12 keeps
// <expected> disabled under clang 14/16 (their __cpp_concepts is 201907), and the fuzzers need
// clang, so the tree carries its own. No exceptions: value() on an error is a programming bug and
// aborts, as operator* would be undefined behaviour in std::expected.
#include <cstdlib>
#include <type_traits>
#include <utility>
#include <variant>

namespace common {

template <class E>
class unexpected {
 public:
  template <class Err = E>
  requires std::is_constructible_v<E, Err>
  constexpr explicit unexpected(Err&& e) : e_(std::forward<Err>(e)) {}

  constexpr const E& error() const& noexcept { return e_; }
  constexpr E& error() & noexcept { return e_; }
  constexpr E&& error() && noexcept { return std::move(e_); }

 private:
  E e_;
};

template <class E>
unexpected(E) -> unexpected<E>;

template <class T, class E>
class expected {
 public:
  using value_type = T;
  using error_type = E;

  constexpr expected() requires std::is_default_constructible_v<T> : v_(std::in_place_index<0>) {}
  template <class U = T>
  requires(!std::is_same_v<std::remove_cvref_t<U>, expected> &&
           std::is_constructible_v<T, U>) constexpr expected(U&& v)
      : v_(std::in_place_index<0>, std::forward<U>(v)) {}
  template <class G>
  requires std::is_constructible_v<E, const G&>
  constexpr expected(const unexpected<G>& u) : v_(std::in_place_index<1>, u.error()) {}
  template <class G>
  requires std::is_constructible_v<E, G>
  constexpr expected(unexpected<G>&& u) : v_(std::in_place_index<1>, std::move(u).error()) {}

  constexpr bool has_value() const noexcept { return v_.index() == 0; }
  constexpr explicit operator bool() const noexcept { return has_value(); }

  constexpr T& value() & { return check(), *std::get_if<0>(&v_); }
  constexpr const T& value() const& { return check(), *std::get_if<0>(&v_); }
  constexpr T&& value() && { return check(), std::move(*std::get_if<0>(&v_)); }
  constexpr T& operator*() & { return value(); }
  constexpr const T& operator*() const& { return value(); }
  constexpr T&& operator*() && { return std::move(*this).value(); }
  constexpr T* operator->() { return &value(); }
  constexpr const T* operator->() const { return &value(); }
  template <class U>
  constexpr T value_or(U&& other) const& {
    return has_value() ? *std::get_if<0>(&v_) : static_cast<T>(std::forward<U>(other));
  }

  constexpr E& error() & { return check_error(), *std::get_if<1>(&v_); }
  constexpr const E& error() const& { return check_error(), *std::get_if<1>(&v_); }
  constexpr E&& error() && { return check_error(), std::move(*std::get_if<1>(&v_)); }

 private:
  constexpr void check() const {
    if (!has_value()) std::abort();
  }
  constexpr void check_error() const {
    if (has_value()) std::abort();
  }
  std::variant<T, E> v_;
};

template <class E>
class expected<void, E> {
 public:
  using value_type = void;
  using error_type = E;

  constexpr expected() noexcept = default;
  template <class G>
  requires std::is_constructible_v<E, const G&>
  constexpr expected(const unexpected<G>& u) : e_(u.error()), ok_(false) {}
  template <class G>
  requires std::is_constructible_v<E, G>
  constexpr expected(unexpected<G>&& u) : e_(std::move(u).error()), ok_(false) {}

  constexpr bool has_value() const noexcept { return ok_; }
  constexpr explicit operator bool() const noexcept { return ok_; }
  constexpr void value() const {
    if (!ok_) std::abort();
  }
  constexpr void operator*() const noexcept {}

  constexpr E& error() & { return check_error(), e_; }
  constexpr const E& error() const& { return check_error(), e_; }
  constexpr E&& error() && { return check_error(), std::move(e_); }

 private:
  constexpr void check_error() const {
    if (ok_) std::abort();
  }
  E e_{};
  bool ok_ = true;
};

}  // namespace common
