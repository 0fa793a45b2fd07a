/*
 * bench/floor.c -- the floor of any store a Lua 5.4 program calls through a C
 * function: a method of a userdata that checks `self` and its arguments and
 * returns a fresh copy of a stored value, and does nothing else (no lookup,
 * no lock).  bench/bench.lua times zeltkv's get and set against it: what is
 * left above this floor is zeltkv's own work.
 *
 *   local floor = package.loadlib(path, "luaopen_zkvfloor")()
 *   local s = floor.new()
 *   s:set(key, value)   -- checks self, key and value; copies value (<= 64 bytes)
 *   s:get(key)          -- checks self and key; returns a new string of the value
 *   s:get_uv(key)       -- the same, self checked against a metatable upvalue
 */
#include <lauxlib.h>
#include <lua.h>
#include <string.h>

#define FLOOR_MT "zkvfloor.Store"

typedef struct Floor {
  size_t len;
  char value[64];
} Floor;

static Floor *check(lua_State *L) { return (Floor *)luaL_checkudata(L, 1, FLOOR_MT); }

static int floor_get(lua_State *L) {
  Floor *f = check(L);
  size_t kl;
  luaL_checklstring(L, 2, &kl);
  lua_pushlstring(L, f->value, f->len);
  return 1;
}

/* the same get with self checked as zeltkv's methods check it: the class
 * metatable is upvalue 1, compared with self's (no registry lookup by name) */
static int floor_get_uv(lua_State *L) {
  Floor *f = (Floor *)lua_touserdata(L, 1);
  if (!f || !lua_getmetatable(L, 1) || !lua_rawequal(L, -1, lua_upvalueindex(1)))
    return luaL_typeerror(L, 1, FLOOR_MT);
  lua_pop(L, 1);
  size_t kl;
  luaL_checklstring(L, 2, &kl);
  lua_pushlstring(L, f->value, f->len);
  return 1;
}

static int floor_set(lua_State *L) {
  Floor *f = check(L);
  size_t kl, vl;
  luaL_checklstring(L, 2, &kl);
  const char *v = luaL_checklstring(L, 3, &vl);
  luaL_argcheck(L, vl <= sizeof f->value, 3, "value longer than 64 bytes");
  memcpy(f->value, v, vl);
  f->len = vl;
  lua_pushboolean(L, 1);
  return 1;
}

static int floor_new(lua_State *L) {
  Floor *f = (Floor *)lua_newuserdata(L, sizeof *f);
  f->len = 0;
  luaL_setmetatable(L, FLOOR_MT);
  return 1;
}

int luaopen_zkvfloor(lua_State *L);
int luaopen_zkvfloor(lua_State *L) {
  static const luaL_Reg methods[] = {{"get", floor_get}, {"set", floor_set}, {NULL, NULL}};
  luaL_newmetatable(L, FLOOR_MT);
  luaL_newlib(L, methods);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, floor_get_uv, 1);
  lua_setfield(L, -2, "get_uv");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushcfunction(L, floor_new);
  lua_setfield(L, -2, "new");
  return 1;
}
