/*
 * compat.h -- the only Lua version compatibility block of the binding.
 *
 * The binding is written against Lua 5.4; this maps what 5.1 (and LuaJIT), 5.2
 * and 5.3 lack. Two facts differ between versions and each has one switch here:
 *
 *   ZKV_LUA51   numbers have no integer subtype (Lua 5.1, LuaJIT and Lua 5.2):
 *               every number is a double, exact integers reach only 2^53, and an
 *               integral double is taken as an integer where 5.3+ would keep the
 *               subtype. (The name predates 5.2 support; it means "doubles only".)
 *   user value  5.1 userdata carry an environment table; 5.2 and 5.3 one user
 *               value; 5.4 any number of them (we use one).
 */
#ifndef ZKV_COMPAT_H
#define ZKV_COMPAT_H

#include <lauxlib.h>
#include <lua.h>

#if LUA_VERSION_NUM < 503
/* ---- numbers are doubles: Lua 5.1, LuaJIT, Lua 5.2 ---- */
#define ZKV_LUA51 1
static inline int zl_isinteger(lua_State *L, int i) {
  if (lua_type(L, i) != LUA_TNUMBER) return 0;
  lua_Number n = lua_tonumber(L, i);
  /* the range first: converting a double beyond long long (or NaN) is undefined */
  return n >= -9007199254740992.0 && n <= 9007199254740992.0 && n == (lua_Number)(long long)n;
}
#define zl_tointeger(L, i) ((long long)lua_tonumber(L, (i)))
#define zl_pushinteger(L, v) lua_pushnumber(L, (lua_Number)(v))
#define ZKV_INT_LIMIT 9007199254740992LL /* numbers are doubles: exact to 2^53 */
#else
/* ---- 64-bit integer subtype: Lua 5.3, 5.4 ---- */
#define zl_isinteger(L, i) lua_isinteger(L, (i))
#define zl_tointeger(L, i) ((long long)lua_tointeger(L, (i)))
#define zl_pushinteger(L, v) lua_pushinteger(L, (lua_Integer)(v))
#define ZKV_INT_LIMIT 0 /* the full int64 range */
#endif

#if LUA_VERSION_NUM < 502
/* ---- Lua 5.1 and LuaJIT only ---- */
#define lua_rawlen(L, i) lua_objlen(L, (i))
#define zl_setuservalue(L, i) lua_setfenv(L, (i))
#define zl_getuservalue(L, i) lua_getfenv(L, (i))
#define LUA_OK 0
#elif LUA_VERSION_NUM < 504
/* ---- Lua 5.2 and 5.3: one user value (5.2 accepts only a table: it is one) ---- */
#define zl_setuservalue(L, i) lua_setuservalue(L, (i))
#define zl_getuservalue(L, i) ((void)lua_getuservalue(L, (i)))
#else
#define zl_setuservalue(L, i) lua_setiuservalue(L, (i), 1)
#define zl_getuservalue(L, i) ((void)lua_getiuservalue(L, (i), 1))
#endif

#if LUA_VERSION_NUM < 504
#define lua_newuserdatauv(L, sz, n) lua_newuserdata(L, (sz))
/* luaL_typeerror is new in 5.4; 5.1 had luaL_typerror, 5.2 and 5.3 neither.
 * The message is 5.4's. */
static inline int zl_typeerror(lua_State *L, int arg, const char *tname) {
  const char *msg = lua_pushfstring(L, "%s expected, got %s", tname, luaL_typename(L, arg));
  return luaL_argerror(L, arg, msg);
}
#define luaL_typeerror(L, a, t) zl_typeerror(L, (a), (t))
#endif

#endif
