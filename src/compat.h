/*
 * compat.h -- the only Lua 5.1 / LuaJIT compatibility block of the binding.
 * The binding is written against Lua 5.4; this maps what 5.1 lacks.
 */
#ifndef ZKV_COMPAT_H
#define ZKV_COMPAT_H

#include <lauxlib.h>
#include <lua.h>

#if LUA_VERSION_NUM < 502
#define ZKV_LUA51 1
#define lua_rawlen(L, i) lua_objlen(L, (i))
/* 5.1 userdata carry an environment table where 5.2+ have a user value */
#define zkv_setuservalue(L, i) lua_setfenv(L, (i))
#define zkv_getuservalue(L, i) lua_getfenv(L, (i))
#define luaL_typeerror(L, a, t) luaL_typerror(L, (a), (t))
#define LUA_OK 0
static inline int zkv_isinteger(lua_State *L, int i) {
  if (lua_type(L, i) != LUA_TNUMBER) return 0;
  lua_Number n = lua_tonumber(L, i);
  return n == (lua_Number)(long long)n && n >= -9007199254740992.0 && n <= 9007199254740992.0;
}
#define zkv_tointeger(L, i) ((long long)lua_tonumber(L, (i)))
#define zkv_pushinteger(L, v) lua_pushnumber(L, (lua_Number)(v))
#define ZKV_INT_LIMIT 9007199254740992LL /* numbers are doubles: exact to 2^53 */
#define lua_newuserdatauv(L, sz, n) lua_newuserdata(L, (sz))
#else
#define zkv_setuservalue(L, i) lua_setiuservalue(L, (i), 1)
#define zkv_getuservalue(L, i) lua_getiuservalue(L, (i), 1)
#define zkv_isinteger(L, i) lua_isinteger(L, (i))
#define zkv_tointeger(L, i) ((long long)lua_tointeger(L, (i)))
#define zkv_pushinteger(L, v) lua_pushinteger(L, (lua_Integer)(v))
#define ZKV_INT_LIMIT 0 /* the full int64 range */
#if LUA_VERSION_NUM < 504
#undef zkv_setuservalue
#undef zkv_getuservalue
#define zkv_setuservalue(L, i) lua_setuservalue(L, (i))
#define zkv_getuservalue(L, i) lua_getuservalue(L, (i))
#define lua_newuserdatauv(L, sz, n) lua_newuserdata(L, (sz))
#endif
#endif

#endif
